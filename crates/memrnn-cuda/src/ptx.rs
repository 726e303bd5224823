//! The PTX built by `cargo xtask ptx` from `kernels/*.cu`, embedded in the library so that
//! neither a build nor a downstream crate needs a CUDA toolkit.

/// `kernels/rnn.cu` (sm_90).
pub const RNN: &str = include_str!("../ptx/rnn.ptx");
/// `kernels/gru.cu` (sm_90).
pub const GRU: &str = include_str!("../ptx/gru.ptx");
/// `kernels/lstm.cu` (sm_90).
pub const LSTM: &str = include_str!("../ptx/lstm.ptx");
/// `kernels/adam.cu` (sm_90).
pub const ADAM: &str = include_str!("../ptx/adam.ptx");
/// `kernels/slowpoints.cu` (sm_90).
pub const SLOWPOINTS: &str = include_str!("../ptx/slowpoints.ptx");
/// `kernels/readout.cu` (sm_90).
pub const READOUT: &str = include_str!("../ptx/readout.ptx");
/// `kernels/task.cu` (sm_90).
pub const TASK: &str = include_str!("../ptx/task.ptx");
/// Source, header and PTX hashes, nvcc's version and the flags.
pub const MANIFEST: &str = include_str!("../ptx/MANIFEST");

/// Every embedded module: (file name, PTX).
pub const ALL: [(&str, &str); 7] = [
    ("rnn.ptx", RNN),
    ("gru.ptx", GRU),
    ("lstm.ptx", LSTM),
    ("adam.ptx", ADAM),
    ("slowpoints.ptx", SLOWPOINTS),
    ("readout.ptx", READOUT),
    ("task.ptx", TASK),
];

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::path::PathBuf;

    fn sha256_hex(data: &[u8]) -> String {
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn manifest_entries(kind: &str) -> Vec<(String, String)> {
        MANIFEST
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(kind)).then(|| {
                    let name = it.next().unwrap_or_default().to_string();
                    let hash = it.next().unwrap_or_default().to_string();
                    (name, hash)
                })
            })
            .collect()
    }

    /// The committed PTX was built from the kernels in the tree: fails with the fix when a
    /// `.cu` or `.cuh` changed (or appeared, or went) without `cargo xtask ptx`.
    #[test]
    fn ptx_is_fresh_against_kernels() {
        let kernels = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kernels");
        if !kernels.is_dir() {
            eprintln!("kernels/ not present (packaged crate): nothing to compare against");
            return;
        }
        let mut listed: Vec<(String, String)> = manifest_entries("source");
        listed.extend(manifest_entries("header"));
        listed.sort();
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&kernels)
            .expect("kernels/ is readable")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("cu") | Some("cuh")
                )
            })
            .map(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let data = std::fs::read(&p).expect("kernel source is readable");
                (name, sha256_hex(&data))
            })
            .collect();
        on_disk.sort();
        assert_eq!(
            listed, on_disk,
            "crates/memrnn-cuda/ptx is stale against kernels/: run `cargo xtask ptx` and commit the result"
        );
    }

    /// The embedded PTX is the PTX the MANIFEST lists.
    #[test]
    fn embedded_ptx_matches_manifest() {
        let listed = manifest_entries("ptx");
        assert_eq!(listed.len(), ALL.len(), "MANIFEST lists {listed:?}");
        for (name, src) in ALL {
            let want = listed
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, h)| h.clone())
                .unwrap_or_default();
            assert_eq!(
                sha256_hex(src.as_bytes()),
                want,
                "{name} does not match MANIFEST: run `cargo xtask ptx`"
            );
        }
    }

    #[test]
    fn manifest_records_pinned_nvcc_without_fast_math() {
        assert!(MANIFEST.contains("V13.0.88"), "{MANIFEST}");
        assert!(!MANIFEST.contains("use_fast_math"));
    }
}
