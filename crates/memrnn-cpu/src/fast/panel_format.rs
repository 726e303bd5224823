//! Which element type holds the recurrent panels in a half precision: the format itself
//! (bf16 / f16, widened to f32 in registers) or f32 holding the rounded values.
//!
//! Both compute exactly the same numbers: every bf16 and f16 value is an f32 value, and
//! the micro-kernel widens a half-width weight to exactly that f32 before using it, so a
//! run's bits do not depend on the choice (tested: `tests/tests/cpu_fast.rs`). Only the
//! speed does. Half-width panels halve the bytes each step streams, which pays when the
//! f32 panels would not stay in the core's L2 cache (they then come from L3 or memory
//! every step); when they do stay, the widening (a shift or a conversion per 8 weights,
//! on the same ports as the FMAs) is pure cost. Measured on a 2 MiB-L2 Xeon
//! (`benches/RESULTS.md`, fifth session): the small-batch LSTM (H 256) forward in bf16 took
//! 30–37 ms with half-width panels and 28–29 ms with f32 ones; at the `wide` shape (H 1024,
//! 12–16 MiB of f32 panels per thread) the half-width panels made the GRU's training step
//! 1.1× faster.

use std::sync::OnceLock;

/// The element type of the recurrent panels in a half precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PanelFormat {
    /// The format's own width where the f32 panels one thread streams per step would
    /// fill more than half of its core's L2 cache (half left to the activations and
    /// the other pass's panels), else f32 holding the rounded values.
    #[default]
    Auto,
    /// Always the precision's own format (bf16 or f16).
    Storage,
    /// Always f32 panels holding the rounded values.
    F32,
}

/// Fallback L2 size where the OS does not say: 512 KiB, the smallest per-core L2 of the
/// x86 server parts memrnn is measured on (AMD EPYC), so an unknown machine leans to
/// half-width panels, the choice that cannot be slow by much.
const FALLBACK_L2_BYTES: usize = 512 << 10;

/// The L2 cache of one core in bytes: Linux's sysfs description of CPU 0's unified (or
/// data) level-2 cache, divided by the CPUs sharing it; [`FALLBACK_L2_BYTES`] where that
/// is missing or unreadable. Read once per process.
pub fn l2_bytes_per_core() -> usize {
    static L2: OnceLock<usize> = OnceLock::new();
    *L2.get_or_init(|| read_l2_bytes_per_core().unwrap_or(FALLBACK_L2_BYTES))
}

fn read_l2_bytes_per_core() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    for entry in dir.flatten() {
        let path = entry.path();
        let read = |name: &str| std::fs::read_to_string(path.join(name)).ok();
        if read("level")?.trim() != "2" || read("type")?.trim() == "Instruction" {
            continue;
        }
        let bytes = parse_size(read("size")?.trim())?;
        let sharing = read("shared_cpu_list").map_or(1, |l| count_cpus(l.trim()));
        return Some(bytes / sharing.max(1));
    }
    None
}

/// `"2048K"`, `"1M"` or a plain byte count.
fn parse_size(s: &str) -> Option<usize> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = digits.parse().ok()?;
    let scale = match unit.trim() {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// The number of CPUs in a list such as `"0-1,4,6-7"` (at least 1).
fn count_cpus(list: &str) -> usize {
    list.split(',')
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

/// Whether a pass whose threads each stream `f32_bytes_per_thread` bytes of f32 panels
/// per step should hold them in the half-width format (`format` for a half precision).
pub fn half_width_pays(format: PanelFormat, f32_bytes_per_thread: usize, l2_bytes: usize) -> bool {
    match format {
        PanelFormat::Storage => true,
        PanelFormat::F32 => false,
        PanelFormat::Auto => 2 * f32_bytes_per_thread > l2_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpu_lists_parse() {
        assert_eq!(parse_size("2048K"), Some(2 << 20));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(count_cpus("0"), 1);
        assert_eq!(count_cpus("0-1"), 2);
        assert_eq!(count_cpus("0-3,8,10-11"), 7);
        assert_eq!(count_cpus("garbage"), 1);
    }

    #[test]
    fn auto_takes_half_width_only_beyond_half_the_l2() {
        let l2 = 2 << 20;
        assert!(!half_width_pays(PanelFormat::Auto, 1 << 20, l2));
        assert!(half_width_pays(PanelFormat::Auto, (1 << 20) + 4, l2));
        assert!(half_width_pays(PanelFormat::Storage, 4, l2));
        assert!(!half_width_pays(PanelFormat::F32, 1 << 30, l2));
        assert!(l2_bytes_per_core() >= 1 << 10);
    }
}
