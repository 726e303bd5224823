//! The `memrnn` binary end to end on the bundled data: train, fine-tune with the speed
//! penalty, evaluate; and its errors for bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn memrnn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memrnn"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run memrnn")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn train_finetune_eval() {
    let dir = tmp("tfe");
    let d = dir.to_str().unwrap();
    let net = [
        "--hidden",
        "8",
        "--batch",
        "8",
        "--steps",
        "6",
        "--log-every",
        "2",
    ];
    let mut a = vec![
        "--quiet",
        "--backend",
        "cpu",
        "train",
        "--out",
        d,
        "--name",
        "base",
    ];
    a.extend(net);
    let o = memrnn(&a);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("backend cpu"));
    let ck = dir.join("base.safetensors");
    let ck = ck.to_str().unwrap();
    let mut a = vec![
        "--quiet", "train", "--out", d, "--name", "speed", "--init", ck, "--lambda", "0.01",
    ];
    a.extend(net);
    let o = memrnn(&a);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("speed penalty"), "{}", text(&o));
    let o = memrnn(&[
        "--quiet",
        "eval",
        "--checkpoint",
        ck,
        "--delays",
        "5,30",
        "--trials",
        "20",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("delay"));
    assert!(dir.join("base.eval.json").is_file() && dir.join("base.eval.svg").is_file());

    // Errors.
    let mut a = vec![
        "--quiet", "train", "--out", d, "--init", ck, "--lambda", "-1",
    ];
    a.extend(net);
    let o = memrnn(&a);
    assert!(
        !o.status.success() && text(&o).contains("λ"),
        "{}",
        text(&o)
    );
    let mut a = vec![
        "--quiet", "train", "--out", d, "--resume", ck, "--cell", "lstm",
    ];
    a.extend(net);
    let o = memrnn(&a);
    assert!(
        !o.status.success() && text(&o).contains("lstm cell"),
        "{}",
        text(&o)
    );
    let o = memrnn(&["--quiet", "eval", "--checkpoint", ck, "--delays", "0"]);
    assert!(
        !o.status.success() && text(&o).contains("delay 0"),
        "{}",
        text(&o)
    );
}

#[test]
fn bad_backend_and_missing_data_are_clear_errors() {
    let o = memrnn(&["--backend", "cuda", "train"]);
    assert!(
        !o.status.success() && text(&o).contains("--backend cpu"),
        "{}",
        text(&o)
    );
    let o = memrnn(&["train", "--mnist-dir", "/nonexistent/mnist"]);
    assert!(
        !o.status.success() && text(&o).contains("--mnist-dir"),
        "{}",
        text(&o)
    );
    let o = memrnn(&["eval", "--checkpoint", "/nonexistent/x.safetensors"]);
    assert!(
        !o.status.success() && text(&o).contains("x.safetensors"),
        "{}",
        text(&o)
    );
}

#[test]
fn slow_points_and_diagnose_write_their_reports() {
    let dir = tmp("spd");
    let d = dir.to_str().unwrap();
    let o = memrnn(&[
        "--quiet",
        "--backend",
        "cpu",
        "train",
        "--out",
        d,
        "--name",
        "net",
        "--hidden",
        "8",
        "--batch",
        "8",
        "--steps",
        "4",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let ck = dir.join("net.safetensors");
    let ck = ck.to_str().unwrap();
    let sp = dir.join("sp");
    let o = memrnn(&[
        "--quiet",
        "slow-points",
        "--checkpoint",
        ck,
        "--out",
        sp.to_str().unwrap(),
        "--candidates",
        "20",
        "--max-iters",
        "200",
        "--max-speed-sq",
        "1e9",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("slow points of a gru cell (H 8) from 30 candidates"),
        "{}",
        text(&o)
    );
    assert!(sp.join("slow_points.safetensors").is_file() && sp.join("slow_points.json").is_file());
    let dg = dir.join("diag");
    let o = memrnn(&[
        "--quiet",
        "diagnose",
        "--checkpoint",
        ck,
        "--out",
        dg.to_str().unwrap(),
        "--trials",
        "40",
        "--steps",
        "12",
        "--long-lags",
        "20",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "long_memory.json",
        "report.json",
        "lipschitz.svg",
        "lyapunov.svg",
        "orbit.svg",
        "memory.svg",
    ] {
        assert!(dg.join(f).is_file(), "missing {f}: {}", text(&o));
    }
    assert!(text(&o).contains("Lipschitz"), "{}", text(&o));
    assert!(
        text(&o).contains("memory at long lags") && text(&o).contains("at lag 20"),
        "{}",
        text(&o)
    );
    // A checkpoint that is not there, and one of the wrong input size, are clear errors.
    let o = memrnn(&[
        "--quiet",
        "slow-points",
        "--checkpoint",
        "/nonexistent.safetensors",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("nonexistent"),
        "{}",
        text(&o)
    );
}

#[test]
fn study_reports_a_correlation() {
    let dir = tmp("study");
    let o = memrnn(&[
        "--quiet",
        "study",
        "--out",
        dir.to_str().unwrap(),
        "--cells",
        "rnn,gru",
        "--curricula",
        "none",
        "--seeds",
        "1,2",
        "--hidden",
        "8",
        "--batch",
        "8",
        "--steps",
        "5",
        "--long-delay",
        "40",
        "--eval-trials",
        "20",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Spearman"), "{}", text(&o));
    assert!(dir.join("study.json").is_file() && dir.join("study.svg").is_file());
    let o = memrnn(&[
        "--quiet",
        "study",
        "--out",
        dir.to_str().unwrap(),
        "--long-delay",
        "5",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("beyond the training delays"),
        "{}",
        text(&o)
    );
}

#[test]
fn track_every_records_slow_points_and_diagnostics_along_training() {
    let dir = tmp("track");
    let o = memrnn(&[
        "--quiet",
        "train",
        "--out",
        dir.to_str().unwrap(),
        "--name",
        "t",
        "--hidden",
        "8",
        "--batch",
        "8",
        "--steps",
        "6",
        "--track-every",
        "3",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let lines = std::fs::read_to_string(dir.join("t.track.jsonl")).unwrap();
    let steps: Vec<u64> = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(
                v["slow_point_speed_sq"].as_array().map(Vec::len),
                Some(10),
                "{l}"
            );
            assert!(v["lipschitz"].as_f64().is_some_and(|x| x > 0.0), "{l}");
            v["step"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(steps, vec![0, 3, 6]);
}

/// The final training loss printed by `memrnn train` ("… loss 3.6678, …").
fn final_loss(out: &str) -> f64 {
    let at = out
        .find("loss ")
        .unwrap_or_else(|| panic!("no loss line in:\n{out}"));
    out[at + 5..]
        .split(|c: char| c == ',' || c.is_whitespace())
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unparsable loss in:\n{out}"))
}

/// `--backend cuda-sim` runs training and evaluation through the CUDA backend's host code
/// and kernels on the simulated device, says so, and trains the same network as the CPU
/// (same seed: the same loss up to f32 reordering).
#[test]
fn cuda_sim_backend_trains_like_the_cpu_and_says_it_is_simulated() {
    let dir = tmp("sim");
    let d = dir.to_str().expect("utf-8 temp dir");
    let net = [
        "--hidden", "8", "--batch", "4", "--steps", "5", "--t-max", "6", "--seed", "3",
    ];
    let mut loss = Vec::new();
    for backend in ["cpu", "cuda-sim"] {
        let mut args = vec!["--backend", backend, "--quiet", "train", "--out", d];
        args.extend(["--name", backend]);
        args.extend(net);
        let o = memrnn(&args);
        let t = text(&o);
        assert!(o.status.success(), "{backend} train failed:\n{t}");
        if backend == "cuda-sim" {
            assert!(t.contains("SIMULATED"), "no simulated-device notice:\n{t}");
        }
        loss.push(final_loss(&t));
    }
    assert!(
        (loss[0] - loss[1]).abs() <= 1e-3 * loss[0].abs().max(1.0),
        "cpu loss {} vs cuda-sim loss {}",
        loss[0],
        loss[1]
    );
    let ckpt = dir.join("cuda-sim.safetensors");
    let o = memrnn(&[
        "--backend",
        "cuda-sim",
        "--sim-device",
        "small",
        "--quiet",
        "eval",
        "--checkpoint",
        ckpt.to_str().expect("utf-8 path"),
        "--delays",
        "1,3",
        "--trials",
        "16",
        "--eval-batch",
        "16",
        "--out",
        d,
    ]);
    let t = text(&o);
    assert!(o.status.success(), "cuda-sim eval failed:\n{t}");
    assert!(t.contains("SIMULATED"), "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--precision bf16` trains on the CPU, names the precision in the backend line, and is
/// recorded in the checkpoint's metadata and every metrics line; resuming in another
/// precision is refused with the fix; the CUDA backend (simulated here) trains in f16 too.
#[test]
fn precision_is_recorded_and_checked() {
    let dir = tmp("precision");
    let d = dir.to_str().unwrap();
    let net = [
        "--hidden",
        "8",
        "--batch",
        "4",
        "--steps",
        "4",
        "--log-every",
        "2",
        "--t-max",
        "6",
    ];
    let mut a = vec![
        "--quiet",
        "--backend",
        "cpu",
        "--precision",
        "bf16",
        "train",
        "--out",
        d,
        "--name",
        "half",
    ];
    a.extend(net);
    let o = memrnn(&a);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("W_hh in bf16"), "{}", text(&o));
    let ck = dir.join("half.safetensors");
    let (_, meta) = memrnn_core::checkpoint::read_tensors(&ck).expect("checkpoint");
    assert_eq!(
        meta.get("memrnn.train.precision").map(String::as_str),
        Some("bf16")
    );
    let metrics = std::fs::read_to_string(dir.join("half.metrics.jsonl")).unwrap();
    assert!(metrics.lines().count() >= 2, "{metrics}");
    assert!(
        metrics
            .lines()
            .all(|l| l.contains("\"precision\":\"bf16\"")),
        "{metrics}"
    );

    // Resuming in f32 is refused, naming the precision to use.
    let mut a = vec![
        "--quiet",
        "--backend",
        "cpu",
        "train",
        "--out",
        d,
        "--name",
        "half",
        "--resume",
        ck.to_str().unwrap(),
    ];
    a.extend(net);
    let steps = a.iter().position(|x| *x == "--steps").unwrap() + 1;
    a[steps] = "8"; // past the checkpoint's 4
    let o = memrnn(&a);
    assert!(!o.status.success());
    assert!(text(&o).contains("--precision bf16"), "{}", text(&o));

    // The CUDA backend's half-width kernels, on the simulated device: it trains, names
    // the precision in its backend line and records it.
    let mut a = vec![
        "--quiet",
        "--backend",
        "cuda-sim",
        "--precision",
        "f16",
        "train",
        "--out",
        d,
        "--name",
        "sim-f16",
    ];
    a.extend(net);
    let o = memrnn(&a);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("W_hh in f16"), "{}", text(&o));
    assert!(final_loss(&text(&o)).is_finite(), "{}", text(&o));
    let (_, meta) =
        memrnn_core::checkpoint::read_tensors(&dir.join("sim-f16.safetensors")).expect("ckpt");
    assert_eq!(
        meta.get("memrnn.train.precision").map(String::as_str),
        Some("f16")
    );
    let o = memrnn(&["--precision", "f8", "train", "--out", d]);
    assert!(!o.status.success());
    assert!(text(&o).contains("f32, bf16, f16"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
