//! Bounds on what a command may ask for, from what it would need: the memory a command
//! will allocate is estimated before anything is allocated and compared with the memory
//! the machine has ([`MemoryBudget`]); counts that cost only time have fixed, explained
//! ceilings. Also the strict JSON reading of configuration files ([`from_json_strict`])
//! and the check of output names ([`check_run_name`]).
//!
//! The estimates are deliberately generous (every buffer a step keeps alive, on the host
//! and again on the device, rounded up): they are meant to refuse requests that cannot fit
//! by orders of magnitude before the allocator aborts the process, not to squeeze the
//! last gigabyte.

use crate::error::{config_err, Result};
use memrnn_core::CellDims;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Environment variable that overrides the memory memrnn believes it may use
/// (bytes, or with a K, M, G or T suffix: `MEMRNN_MEMORY_LIMIT=4G`).
pub const MEMORY_LIMIT_ENV: &str = "MEMRNN_MEMORY_LIMIT";

/// Assumed when the machine's memory cannot be read (no `/proc/meminfo`).
pub const FALLBACK_MEMORY: u64 = 8 << 30;

/// Most trials per delay in an evaluation (and per network in a study): the standard
/// error of an accuracy is already below 2·10⁻⁴ at this count, and more only costs time.
pub const MAX_TRIALS: usize = 10_000_000;

/// Most slow-point candidates: far beyond what de-duplication can use.
pub const MAX_CANDIDATES: usize = 1_000_000;

/// Most iterations of a slow-point search.
pub const MAX_SEARCH_ITERS: u32 = 10_000_000;

/// Most training steps (about 10⁹; the paper trains for 1.4·10⁵).
pub const MAX_STEPS: u64 = 1 << 30;

/// The memory a command may allocate, and where that figure came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes a command may allocate.
    pub available: u64,
    /// The machine's total memory, when known.
    pub total: Option<u64>,
    /// Where `available` came from, in words (shown in refusals).
    pub source: String,
}

impl MemoryBudget {
    /// The budget of this machine: `MEMRNN_MEMORY_LIMIT` when set, else `MemAvailable` of
    /// `/proc/meminfo` (capped by a cgroup v2 `memory.max` when one applies), else
    /// [`FALLBACK_MEMORY`].
    pub fn detect() -> Result<Self> {
        if let Ok(v) = std::env::var(MEMORY_LIMIT_ENV) {
            let bytes = parse_bytes(&v).ok_or_else(|| {
                crate::TrainError::Config(format!(
                    "{MEMORY_LIMIT_ENV}={v:?}: expected a number of bytes, optionally with a K, M, G or T suffix (e.g. 4G)"
                ))
            })?;
            return Ok(MemoryBudget {
                available: bytes,
                total: None,
                source: format!("the limit {MEMORY_LIMIT_ENV}={v}"),
            });
        }
        let from_proc = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| Self::from_meminfo(&t));
        let mut b = from_proc.unwrap_or_else(|| MemoryBudget {
            available: FALLBACK_MEMORY,
            total: None,
            source: format!(
                "an assumed {} (/proc/meminfo could not be read; set {MEMORY_LIMIT_ENV} to the real figure)",
                human(FALLBACK_MEMORY)
            ),
        });
        if let Some(limit) = cgroup_room() {
            if limit < b.available {
                b.available = limit;
                b.source = format!(
                    "the container's memory limit (cgroup memory.max), {}",
                    human(limit)
                );
            }
        }
        Ok(b)
    }

    /// Reads `MemAvailable` (or, on old kernels, `MemFree + Cached`) and `MemTotal` from the
    /// text of `/proc/meminfo`; `None` when neither is there.
    pub fn from_meminfo(text: &str) -> Option<Self> {
        let field = |name: &str| -> Option<u64> {
            text.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                let mut it = rest.split_whitespace();
                let n: u64 = it.next()?.parse().ok()?;
                let unit = match it.next() {
                    None => 1,
                    Some(u) if u.eq_ignore_ascii_case("kb") => 1024,
                    Some(_) => return None,
                };
                n.checked_mul(unit)
            })
        };
        let total = field("MemTotal");
        let available = field("MemAvailable").or_else(|| {
            let free = field("MemFree")?;
            Some(free.saturating_add(field("Cached").unwrap_or(0)))
        })?;
        Some(MemoryBudget {
            available,
            total,
            source: "MemAvailable in /proc/meminfo".into(),
        })
    }

    /// A fixed budget (tests, and callers that know better).
    pub fn fixed(bytes: u64) -> Self {
        MemoryBudget {
            available: bytes,
            total: None,
            source: "a fixed budget".into(),
        }
    }

    /// Refuses `need` bytes for `what` when they exceed the budget, naming both figures
    /// and `fix`.
    pub fn check(&self, what: &str, need: u128, fix: &str) -> Result<()> {
        if need <= self.available as u128 {
            return Ok(());
        }
        let total = self
            .total
            .map(|t| format!(" of {} in all", human(t)))
            .unwrap_or_default();
        config_err(format!(
            "{what} would need about {} of memory, but this machine has {} available{total} \
             ({}); {fix}",
            human_u128(need),
            human(self.available),
            self.source
        ))
    }
}

/// Room left under a cgroup v2 memory limit, when the process is under one.
fn cgroup_room() -> Option<u64> {
    let max = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
    let max: u64 = max.trim().parse().ok()?; // "max" (no limit) does not parse
    let cur: u64 = std::fs::read_to_string("/sys/fs/cgroup/memory.current")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Some(max.saturating_sub(cur))
}

/// `123`, `64K`, `512M`, `4G`, `1T` (powers of 1024; an optional trailing `B`/`iB`).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mul) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1u64 << 10),
        'm' | 'M' => (&t[..t.len() - 1], 1 << 20),
        'g' | 'G' => (&t[..t.len() - 1], 1 << 30),
        't' | 'T' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mul)
}

/// Bytes in words: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    human_u128(bytes as u128)
}

fn human_u128(bytes: u128) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else if v >= 1e6 {
        format!("{v:.3e} {}", units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// `a · b · …` in u128, saturating (sizes from user input can overflow u64 products).
pub fn prod(xs: &[usize]) -> u128 {
    xs.iter().fold(1u128, |a, &x| a.saturating_mul(x as u128))
}

/// Parameters of a cell (`G·H·(I + H + 2)`) as u128.
fn params(cell: &CellDims) -> u128 {
    let g = cell.kind.gates();
    prod(&[g, cell.hidden]).saturating_mul(cell.input as u128 + cell.hidden as u128 + 2)
}

fn state(cell: &CellDims) -> usize {
    cell.state_size()
}

/// Bytes a training step allocates: parameters, gradients and Adam moments (host and
/// device), the batch `x [T, B, I]` (host and device), the forward cache and the backward
/// pass's buffers `[T, B, ·]`, and the speed penalty's `n_penalty` points and inputs.
pub fn train_bytes(cell: &CellDims, t_max: usize, batch: usize, n_penalty: usize) -> u128 {
    let (i, h, g, s) = (cell.input, cell.hidden, cell.kind.gates(), state(cell));
    let per_row = 2 * i as u128 + 4 * h as u128 + 3 * prod(&[g, h]) + 2 * s as u128 + 8;
    let seq = prod(&[t_max, batch]).saturating_mul(per_row);
    let pen = prod(&[n_penalty]).saturating_mul(2 * i as u128 + 6 * s as u128 + prod(&[g, h]));
    4 * params(cell)
        .saturating_mul(8)
        .saturating_add(seq)
        .saturating_add(pen)
}

/// Bytes the digit table of `images` images of `pixels` pixels takes: its f32 copy
/// (`k / 255`, four times the u8 data) built on the host and again where the backend
/// keeps it, for as long as a trainer or an evaluation runs (10,000 MNIST test images:
/// about 63 MB; the 60,000 training images: about 376 MB).
pub fn digit_table_bytes(images: usize, pixels: usize) -> u128 {
    8 * prod(&[images, pixels])
}

/// Bytes an evaluation allocates: one batch of `min(batch, trials)` rows run `chunk`
/// steps at a time (inputs host and device, states, the forward's sequence buffers).
pub fn eval_bytes(cell: &CellDims, batch: usize, trials: usize, chunk: usize) -> u128 {
    let rows = batch.min(trials);
    let (i, h, g, s) = (cell.input, cell.hidden, cell.kind.gates(), state(cell));
    let per_row = 2 * i as u128 + 2 * h as u128 + prod(&[g, h]) + 2 * s as u128;
    4 * params(cell)
        .saturating_mul(2)
        .saturating_add(prod(&[chunk.max(1), rows]).saturating_mul(per_row))
        .saturating_add(prod(&[rows, 32]))
}

/// Bytes a slow-point search allocates: the class means' trials (`mean_trials` rows over
/// `delay` steps), the trajectory candidates' sequences (`candidates` rows over `delay`
/// steps), the search state of every candidate (state, input, Adam moments, gradients)
/// and a Jacobian (f64, with its eigen-decomposition) per candidate in the worst case.
pub fn slow_point_bytes(
    cell: &CellDims,
    candidates: usize,
    delay: usize,
    mean_trials: usize,
) -> u128 {
    let (i, h, g, s) = (cell.input, cell.hidden, cell.kind.gates(), state(cell));
    let per_row = 2 * i as u128 + 2 * h as u128 + prod(&[g, h]) + 2 * s as u128;
    let seqs = prod(&[delay.max(1), candidates.max(mean_trials)]).saturating_mul(per_row);
    let n = candidates as u128 + 10;
    let search = n.saturating_mul(i as u128 + 8 * s as u128);
    let jac = n.saturating_mul(prod(&[s, s])).saturating_mul(4);
    4 * params(cell)
        .saturating_mul(4)
        .saturating_add(seqs)
        .saturating_add(search)
        .saturating_add(jac)
}

/// Bytes the diagnostics allocate for `trials` sequences of `steps` steps: the inputs
/// (host and device), the trajectories (f32 and f64 copies), `exponents` tangent vectors
/// per trial, `attractor_runs × attractor_record` recorded states, the memory probe's
/// samples (f64) and a Jacobian per batched point of the Lipschitz estimate.
pub fn diagnose_bytes(
    cell: &CellDims,
    trials: usize,
    steps: usize,
    exponents: usize,
    attractor_runs: usize,
    attractor_record: usize,
    lipschitz_chunk: usize,
) -> u128 {
    let (i, s) = (cell.input, state(cell));
    let seq = prod(&[steps, trials]).saturating_mul(2 * i as u128 + 8 * s as u128);
    let tangent = prod(&[trials, s, exponents.max(1)]).saturating_mul(4);
    let orbits = prod(&[attractor_runs, attractor_record.saturating_add(1), s]);
    let lip = prod(&[lipschitz_chunk.min(prod(&[steps, trials]) as usize), s]).saturating_mul(4);
    4 * params(cell)
        .saturating_mul(2)
        .saturating_add(seq)
        .saturating_add(tangent)
        .saturating_add(orbits)
        .saturating_add(lip)
}

/// Parses JSON into `T`, refusing keys `T` does not have (anywhere in the document) by
/// name and path: a misspelt key would otherwise be dropped silently and its default used.
/// `T` must serialise every field it reads (no `skip_serializing`).
pub fn from_json_strict<T: Serialize + DeserializeOwned>(
    text: &str,
) -> std::result::Result<T, String> {
    let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let parsed: T = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    let mut unknown = vec![];
    unknown_keys(&raw, &back, "", &mut unknown);
    if !unknown.is_empty() {
        let known = back
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        return Err(format!(
            "unknown key{} {}: no such setting (misspelt?); the top-level keys are {known}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", ")
        ));
    }
    Ok(parsed)
}

fn unknown_keys(
    raw: &serde_json::Value,
    back: &serde_json::Value,
    at: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (raw, back) {
        (Value::Object(r), Value::Object(b)) => {
            for (k, v) in r {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match b.get(k) {
                    Some(bv) => unknown_keys(v, bv, &path, out),
                    None => out.push(format!("{path:?}")),
                }
            }
        }
        (Value::Array(r), Value::Array(b)) => {
            for (n, (rv, bv)) in r.iter().zip(b).enumerate() {
                unknown_keys(rv, bv, &format!("{at}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// A run name becomes file names inside the output folder: it must be a plain name (no
/// path separators, not `.` or `..`, no leading `.` or `-`, no control characters) so
/// that nothing is written outside the folder.
pub fn check_run_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 200
        || name.starts_with('.')
        || name.starts_with('-')
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c == ':' || c.is_control());
    if bad {
        return config_err(format!(
            "run name {name:?}: it names files inside the output folder, so it must be a plain \
             name of 1 to 200 characters without '/', '\\', ':' or control characters, not \
             starting with '.' or '-'; put folders in --out instead"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read_with_and_without_mem_available() {
        let t =
            "MemTotal:       16384000 kB\nMemFree:          100 kB\nMemAvailable:    8192000 kB\n";
        let b = MemoryBudget::from_meminfo(t).unwrap();
        assert_eq!(b.available, 8_192_000 * 1024);
        assert_eq!(b.total, Some(16_384_000 * 1024));
        let old = "MemTotal: 2000 kB\nMemFree: 300 kB\nCached: 200 kB\n";
        assert_eq!(
            MemoryBudget::from_meminfo(old).unwrap().available,
            500 * 1024
        );
        assert!(MemoryBudget::from_meminfo("garbage").is_none());
        assert!(MemoryBudget::detect().unwrap().available > 0);
    }

    #[test]
    fn byte_sizes_parse() {
        assert_eq!(parse_bytes("4G"), Some(4 << 30));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes("99999999999T"), None);
    }

    #[test]
    fn refusals_name_the_need_and_the_machine() {
        let e = MemoryBudget::fixed(1 << 30)
            .check("this", 3 << 30, "use less")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("3.0 GiB") && e.contains("1.0 GiB") && e.contains("use less"),
            "{e}"
        );
    }
}
