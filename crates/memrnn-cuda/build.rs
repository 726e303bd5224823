//! With the `sim` feature: builds the simulated device, i.e. the SIMT runtime in `sim/`
//! and every `kernels/*.cu` compiled as host C++17 through the force-included
//! `sim/cuda_sim.h`, into one static library linked into memrnn-cuda.
//!
//! The kernels are compiled optimised (-O2) even in debug builds so that the conformance
//! suite stays fast under `cargo test`; `-ffp-contract=off` keeps `a * b + c` two
//! roundings on the host, as `__fmul_rn` / `__fadd_rn` promise on the device.
//! `MEMRNN_SIM_ASAN=1` builds it all under AddressSanitizer (with the runtime's fiber
//! annotations), so an out-of-bounds access in a kernel is reported as compute-sanitizer's
//! memcheck would report it on a GPU (`scripts/sim-asan.sh` runs the suite that way).
//! `MEMRNN_SIM_KERNELS_DIR=<dir>` compiles the kernels from `<dir>` instead of `kernels/`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MEMRNN_SIM_ASAN");
    println!("cargo:rerun-if-env-changed=MEMRNN_SIM_KERNELS_DIR");
    #[cfg(feature = "sim")]
    sim::build();
}

#[cfg(feature = "sim")]
mod sim {
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e))
            })
            .collect();
        v.sort();
        v
    }

    pub(super) fn build() {
        let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
        let sim = root.join("sim");
        // MEMRNN_SIM_KERNELS_DIR compiles another copy of kernels/ into the simulated
        // device: the mutation check (scripts/mutation-check.sh) uses it to prove that the
        // conformance suite fails on deliberately broken kernels without touching the tree.
        let kernels = match std::env::var_os("MEMRNN_SIM_KERNELS_DIR") {
            Some(d) => PathBuf::from(d),
            None => root.join("../../kernels"),
        };
        println!("cargo:rerun-if-changed={}", sim.display());
        println!("cargo:rerun-if-changed={}", kernels.display());
        for p in sources(&sim, &["h", "cpp", "S"])
            .into_iter()
            .chain(sources(&sim.join("include"), &["h"]))
            .chain(sources(&kernels, &["cu", "cuh"]))
        {
            println!("cargo:rerun-if-changed={}", p.display());
        }
        let asan = std::env::var("MEMRNN_SIM_ASAN").is_ok_and(|v| v == "1");

        let mut b = cc::Build::new();
        b.cpp(true)
            .std("c++17")
            .opt_level(2)
            .debug(false)
            .warnings(false)
            .include(&sim)
            .include(sim.join("include"))
            .include(&kernels)
            .flag("-ffp-contract=off")
            .flag("-fno-fast-math");
        if asan {
            b.flag("-fsanitize=address").flag("-fno-omit-frame-pointer");
        }
        // The kernels first (the linker resolves their calls into the runtime from the
        // library after them), each through the force-included CUDA-on-host header.
        let mut k = b.clone();
        k.flag("-include")
            .flag(sim.join("cuda_sim.h").to_string_lossy().as_ref())
            .flag("-x")
            .flag("c++");
        for p in sources(&kernels, &["cu"]) {
            k.file(p);
        }
        k.compile("memrnn_sim_kernels");
        // The runtime and the layout table.
        let mut rt = b.clone();
        for p in sources(&sim, &["cpp", "S"]) {
            rt.file(p);
        }
        rt.compile("memrnn_sim_runtime");
        if asan {
            println!("cargo:rustc-link-lib=dylib=asan");
        }
    }
}
