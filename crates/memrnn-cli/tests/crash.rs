//! A killed run never leaves a bad checkpoint: `memrnn train` (a tiny network that
//! checkpoints every step) is killed with SIGKILL at random moments, over and over; after
//! every kill the checkpoint on disk is whole and self-consistent (weights, optimiser state
//! and step in one file), the metrics describe only steps it covers, nothing else is left
//! but a temporary file of the interrupted save, and resuming either continues or refuses
//! clearly. The run pieced together from the kills ends with exactly the weights of an
//! uninterrupted run, and its metrics hold every step once.

use memrnn_core::checkpoint::{load_checkpoint, read_tensors};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: u64 = 60;
/// Kills per test run.
const KILLS: usize = 16;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-cli-crash-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn args(dir: &Path, resume: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "--quiet",
        "--backend",
        "cpu",
        "--threads",
        "1",
        "train",
        "--hidden",
        "4",
        "--batch",
        "4",
        "--t-max",
        "6",
        "--log-every",
        "1",
        "--checkpoint-every",
        "1",
        "--name",
        "m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(["--steps".into(), STEPS.to_string()]);
    a.extend(["--out".into(), dir.display().to_string()]);
    if resume {
        a.extend([
            "--resume".into(),
            dir.join("m.safetensors").display().to_string(),
        ]);
    }
    a
}

fn command(dir: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_memrnn"));
    c.args(args(dir, resume))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A small deterministic generator for the kill times.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The checkpoint's step after checking that it is whole and self-consistent, and that
/// the folder and the metrics agree with it.
fn check_consistent(dir: &Path) -> Option<u64> {
    let ck = dir.join("m.safetensors");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for n in &names {
        assert!(
            [
                "m.safetensors",
                "m.metrics.jsonl",
                "m.safetensors.tmp",
                "m.metrics.jsonl.tmp",
            ]
            .contains(&n.as_str()),
            "stray file {n} in {names:?}"
        );
    }
    let metrics = std::fs::read_to_string(dir.join("m.metrics.jsonl")).unwrap_or_default();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("metrics line {l:?} is not JSON: {e}"))["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        metrics.is_empty() || metrics.ends_with('\n'),
        "a metrics line was cut short"
    );
    if !ck.exists() {
        assert!(steps.is_empty(), "metrics {steps:?} but no checkpoint");
        return None;
    }
    let model = load_checkpoint(&ck).expect("the checkpoint on disk loads");
    let (tensors, meta) = read_tensors(&ck).unwrap();
    let step: u64 = meta["memrnn.train.step"].parse().unwrap();
    assert_eq!(meta["memrnn.train.adam_step"], meta["memrnn.train.step"]);
    let n = model.model.params.len();
    assert_eq!(tensors["memrnn.state.adam.params.m"].data.len(), n);
    assert_eq!(tensors["memrnn.state.adam.params.v"].data.len(), n);
    // Metrics: consecutive steps from 1, none beyond the checkpoint (the lines of the
    // last save may still be on their way: the checkpoint carries them).
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>());
    assert!(
        steps.len() as u64 <= step,
        "metrics {steps:?} beyond checkpoint step {step}"
    );
    Some(step)
}

/// Steps in the metrics file (lines are appended right after each save).
fn logged_steps(dir: &Path) -> u64 {
    std::fs::read(dir.join("m.metrics.jsonl"))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
        .unwrap_or(0)
}

fn final_weights(dir: &Path) -> Vec<f32> {
    let ck = load_checkpoint(&dir.join("m.safetensors")).unwrap();
    let mut w = ck.model.params;
    w.extend(ck.model.readout.unwrap().weight);
    w
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_bad_checkpoint() {
    // The uninterrupted run: the reference, and how long a run takes.
    let reference = tmp("ref");
    let t0 = Instant::now();
    let o = command(&reference, false).output().unwrap();
    let full = t0.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = final_weights(&reference);

    let dir = tmp("killed");
    let mut rng = Lcg(0x0005_EED1_6000);
    let mut kills = 0;
    let mut mid_save = 0;
    let mut finished = false;
    for _ in 0..KILLS {
        let at = check_consistent(&dir);
        if at == Some(STEPS) {
            // Killed after its last save: the run is complete.
            finished = true;
            break;
        }
        let mut child = command(&dir, at.is_some()).spawn().unwrap();
        // Kill at a random moment: a quarter of the time within the first 40 ms (start-up,
        // data loading, the first step), else a random 0–4 ms after the metrics reach a
        // random step between the checkpoint and 40% of the way to the end (inside a step or a
        // save).
        let from = at.unwrap_or(0);
        let early = rng.next() < 0.25;
        let target = from + 1 + (rng.next() * (STEPS - from - 1) as f64 * 0.4) as u64;
        let wait = Duration::from_secs_f64(if early { 0.04 } else { 0.004 } * rng.next());
        eprintln!(
            "round: checkpoint at {at:?}, kill {} {wait:?}",
            if early {
                "after".to_string()
            } else {
                format!("at step {target} +")
            }
        );
        let start = Instant::now();
        let mut reached: Option<Instant> = early.then_some(start);
        let mut status = None;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                status = Some(s);
                break;
            }
            if reached.is_some_and(|r| r.elapsed() >= wait) {
                break;
            }
            if reached.is_none() && logged_steps(&dir) >= target {
                reached = Some(Instant::now());
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the run stalled");
            std::thread::sleep(Duration::from_micros(500));
        }
        match status {
            Some(s) => {
                // It finished before its kill: fine, if it finished well.
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                assert!(
                    s.success(),
                    "a resume of a consistent checkpoint failed: {err}"
                );
                finished = true;
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                if dir.join("m.safetensors.tmp").exists() {
                    mid_save += 1;
                }
            }
        }
    }
    // Every kill left a consistent checkpoint (checked before each resume); now finish.
    let at = check_consistent(&dir);
    if !finished && at != Some(STEPS) {
        let o = command(&dir, at.is_some()).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(check_consistent(&dir), Some(STEPS));
    assert!(
        kills >= 6,
        "only {kills} kills landed (a run took {full:?})"
    );
    assert_eq!(
        final_weights(&dir),
        want,
        "the run pieced together from {kills} kills differs from an uninterrupted one"
    );
    // Resuming the finished run is refused with what to do; had the last kill landed
    // between the final save and its metrics append, it completes them from the checkpoint.
    let o = command(&dir, true).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already at step 60") && err.contains("--steps"),
        "{err}"
    );
    let steps: Vec<u64> = std::fs::read_to_string(dir.join("m.metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=STEPS).collect::<Vec<_>>());
    assert!(!dir.join("m.safetensors.tmp").exists());
    eprintln!("crash test: {kills} kills ({mid_save} inside a save), a whole run takes {full:?}");
}
