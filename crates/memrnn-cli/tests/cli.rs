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
