//! Every example of issue 16, through the `memrnn` binary: a bad input is refused with a
//! message that names the problem and what to do, with exit status 1 (never a panic's
//! 101 or an abort's 134), and nothing is written for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn memrnn(args: &[&str]) -> Output {
    memrnn_env(args, &[])
}

fn memrnn_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_memrnn"));
    c.args(["--quiet", "--backend", "cpu"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run memrnn")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-cli-ref-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Refused: exit 1 and every `needles` in the message.
#[track_caller]
fn refused(o: &Output, needles: &[&str]) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(1), "expected a refusal (exit 1): {t}");
    assert!(!t.contains("panicked"), "{t}");
    for n in needles {
        assert!(t.contains(n), "missing {n:?} in: {t}");
    }
}

const NET: [&str; 8] = [
    "--hidden", "4", "--batch", "4", "--steps", "4", "--t-max", "6",
];

/// A tiny trained checkpoint shared by the tests.
fn checkpoint() -> &'static Path {
    static CK: OnceLock<PathBuf> = OnceLock::new();
    CK.get_or_init(|| {
        let dir = tmp("shared");
        let mut a = vec!["train", "--out", dir.to_str().unwrap(), "--name", "net"];
        a.extend(NET);
        let o = memrnn(&a);
        assert!(o.status.success(), "{}", text(&o));
        dir.join("net.safetensors")
    })
}

#[test]
fn clip_nan_and_negative_are_refused_and_zero_means_off() {
    let dir = tmp("clip");
    let d = dir.to_str().unwrap();
    for clip in ["nan", "NaN", "-1", "-0.5", "inf", "-inf"] {
        if clip != "-inf" {
            // (clap takes a separate "-inf" for an option: only --clip=-inf reaches memrnn)
            let mut a = vec!["train", "--out", d, "--clip", clip];
            a.extend(NET);
            refused(&memrnn(&a), &["--clip", "0 turns clipping off"]);
        }
        let mut a = vec!["train", "--out", d];
        let eq = format!("--clip={clip}");
        a.push(&eq);
        a.extend(NET);
        refused(&memrnn(&a), &["--clip"]);
    }
    assert!(!dir.join("model.safetensors").exists());
    let mut a = vec!["train", "--out", d, "--clip", "0"];
    a.extend(NET);
    let o = memrnn(&a);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn commands_that_would_mean_nothing_are_refused() {
    let dir = tmp("nothing");
    let d = dir.to_str().unwrap();
    // --steps 0 would write an untrained checkpoint.
    refused(
        &memrnn(&["train", "--out", d, "--steps", "0", "--hidden", "4"]),
        &["0 training steps"],
    );
    // --name ../x would write outside --out.
    refused(
        &memrnn(&[
            "train", "--out", d, "--name", "../x", "--hidden", "4", "--steps", "1",
        ]),
        &["run name", "--out"],
    );
    assert!(!dir.parent().unwrap().join("x.safetensors").exists());
    refused(
        &memrnn(&[
            "train", "--out", d, "--name", "a/b", "--hidden", "4", "--steps", "1",
        ]),
        &["run name"],
    );
    // Options that would be ignored.
    refused(
        &memrnn(&["train", "--out", d, "--track-every", "0", "--steps", "1"]),
        &["--track-every 0"],
    );
    refused(
        &memrnn(&["train", "--out", d, "--v", "trajectory", "--steps", "1"]),
        &["--v", "--lambda"],
    );
    refused(
        &memrnn(&["train", "--out", d, "--stage-every", "10", "--steps", "1"]),
        &["--stage-every", "--curriculum"],
    );
    refused(
        &memrnn(&["run", "--out", d, "--lambda", "0", "--steps", "1"]),
        &["λ = 0", "control"],
    );
    refused(
        &memrnn(&["run", "--out", d, "--finetune-steps", "0", "--steps", "1"]),
        &["0 fine-tuning steps"],
    );
    refused(
        &memrnn(&["study", "--out", d, "--seeds", "1,1", "--steps", "1"]),
        &["seed 1 is listed twice"],
    );
    refused(
        &memrnn(&["--threads", "0", "train", "--out", d]),
        &["--threads 0"],
    );
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none());
}

#[test]
fn an_unknown_cell_or_curriculum_is_refused_with_the_choices() {
    // clap refuses with exit 2 and lists the values it knows.
    for (flag, bad, choices) in [
        ("--cell", "gruu", "rnn, gru, lstm"),
        ("--curriculum", "delays", "none, delay, vocab"),
        ("--cells", "rnn,gruu", "rnn, gru, lstm"),
    ] {
        let cmd = if flag == "--cells" { "study" } else { "train" };
        let o = memrnn(&[cmd, flag, bad, "--steps", "1"]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {bad}: {t}");
        assert!(
            t.contains("invalid value") && t.contains(choices),
            "{flag} {bad}: {t}"
        );
    }
}

#[test]
fn a_checkpoint_that_does_not_fit_the_command_is_refused() {
    let ck = checkpoint();
    let dir = tmp("fit");
    // A copy of the checkpoint with a 2-class readout.
    let two = dir.join("two.safetensors");
    std::fs::create_dir_all(&dir).unwrap();
    let c = memrnn_core::checkpoint::load_checkpoint(ck).unwrap();
    let mut m = c.model.clone();
    m.readout = Some(memrnn_core::Readout::init(2, 4, 3).unwrap());
    memrnn_core::checkpoint::save_checkpoint(&two, &m, &c.metadata).unwrap();
    let t = two.to_str().unwrap();
    refused(
        &memrnn(&["eval", "--checkpoint", t, "--delays", "5", "--trials", "10"]),
        &["2 classes", "11"],
    );
    assert!(!dir.join("two.eval.json").exists());
    refused(
        &memrnn(&["slow-points", "--model", t, "--out", dir.to_str().unwrap()]),
        &["2 classes"],
    );
    refused(
        &memrnn(&["diagnose", "--model", t, "--out", dir.to_str().unwrap()]),
        &["2 classes"],
    );
    refused(
        &memrnn(&[
            "train",
            "--init",
            t,
            "--out",
            dir.to_str().unwrap(),
            "--hidden",
            "4",
        ]),
        &["2 classes"],
    );
    // --resume with settings that would change the batches.
    let d = dir.to_str().unwrap();
    let resume = |ck: &str, seed: &str| {
        memrnn(&[
            "train", "--resume", ck, "--out", d, "--hidden", "4", "--batch", "4", "--t-max", "6",
            "--steps", "8", "--seed", seed,
        ])
    };
    refused(
        &resume(ck.to_str().unwrap(), "9"),
        &["--seed", "9", "--init"],
    );
    // --resume of weights without optimiser state.
    let plain = dir.join("plain.safetensors");
    memrnn_core::checkpoint::save_checkpoint(&plain, &c.model, &c.metadata).unwrap();
    refused(
        &resume(plain.to_str().unwrap(), "1"),
        &["no optimiser state", "--init"],
    );
    // Already there: nothing to do.
    refused(
        &memrnn(&[
            "train",
            "--resume",
            ck.to_str().unwrap(),
            "--out",
            d,
            "--hidden",
            "4",
            "--batch",
            "4",
            "--t-max",
            "6",
            "--steps",
            "4",
        ]),
        &["already at step 4", "--steps"],
    );
}

#[test]
fn sizes_with_no_room_are_refused_naming_the_memory() {
    let ck = checkpoint().to_str().unwrap();
    let dir = tmp("sizes");
    let d = dir.to_str().unwrap();
    refused(
        &memrnn(&[
            "slow-points",
            "--model",
            ck,
            "--out",
            d,
            "--candidates",
            "100000000000",
        ]),
        &["--candidates"],
    );
    refused(
        &memrnn(&[
            "slow-points",
            "--model",
            ck,
            "--out",
            d,
            "--candidates",
            "900000",
            "--delay",
            "100000",
        ]),
        &["would need about", "available", "--candidates"],
    );
    refused(
        &memrnn(&[
            "diagnose",
            "--model",
            ck,
            "--out",
            d,
            "--trials",
            "100000000000",
        ]),
        &["--trials", "trials"],
    );
    refused(
        &memrnn(&["diagnose", "--model", ck, "--out", d, "--trials", "5000000"]),
        &["would need about", "available", "--trials"],
    );
    refused(
        &memrnn(&[
            "eval",
            "--checkpoint",
            ck,
            "--out",
            d,
            "--trials",
            "100000000000",
        ]),
        &["trials", "at most 10000000"],
    );
    // The machine's memory is what counts: under a small limit a modest size is refused.
    refused(
        &memrnn_env(
            &["diagnose", "--model", ck, "--out", d, "--trials", "2000"],
            &[("MEMRNN_MEMORY_LIMIT", "64M")],
        ),
        &[
            "would need about",
            "64.0 MiB available",
            "MEMRNN_MEMORY_LIMIT",
        ],
    );
    refused(
        &memrnn_env(&["train", "--out", d], &[("MEMRNN_MEMORY_LIMIT", "lots")]),
        &["MEMRNN_MEMORY_LIMIT", "4G"],
    );
    assert!(!dir.join("report.json").exists());
}

#[test]
fn unknown_keys_in_a_json_config_are_refused_by_name() {
    let ck = checkpoint().to_str().unwrap();
    let dir = tmp("json");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("diag.json");
    std::fs::write(
        &cfg,
        r#"{"lipschitz": {"max_iters": 5, "rel_tol": 1e-6, "stride": 1, "chunk": 64, "seed": 1, "max_iter": 9},
            "lyapunov": null, "attractors": null, "memory": null}"#,
    )
    .unwrap();
    refused(
        &memrnn(&[
            "diagnose",
            "--model",
            ck,
            "--out",
            dir.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ]),
        &["lipschitz.max_iter", "unknown key"],
    );
    std::fs::write(
        &cfg,
        r#"{"lipschitz": null, "lyapunov": null, "attractors": null, "memory": null}"#,
    )
    .unwrap();
    refused(
        &memrnn(&[
            "diagnose",
            "--model",
            ck,
            "--out",
            dir.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ]),
        &["nothing would be measured"],
    );
}

#[test]
fn tracking_records_each_step_once_across_fresh_runs_and_resumes() {
    let dir = tmp("track");
    let d = dir.to_str().unwrap();
    let run = |steps: &str, resume: bool| {
        let ck = dir.join("t.safetensors");
        let mut a = vec![
            "train",
            "--out",
            d,
            "--name",
            "t",
            "--hidden",
            "4",
            "--batch",
            "4",
            "--t-max",
            "6",
            "--track-every",
            "3",
            "--steps",
            steps,
        ];
        if resume {
            a.extend(["--resume", ck.to_str().unwrap()]);
        }
        let o = memrnn(&a);
        assert!(o.status.success(), "{}", text(&o));
        std::fs::read_to_string(dir.join("t.track.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run("3", false), [0, 3]);
    assert_eq!(run("3", false), [0, 3]);
    assert_eq!(run("6", true), [0, 3, 6]);
}
