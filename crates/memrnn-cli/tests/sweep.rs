//! `memrnn sweep` and `memrnn study` end to end on tiny networks: shards merged by the
//! `merge` subcommand give the bytes of one run, two workers those of one, and bad
//! settings are refused by name.

use std::path::{Path, PathBuf};
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
    let d = std::env::temp_dir().join(format!("memrnn-cli-sweep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const SWEEP: &[&str] = &[
    "--quiet",
    "--backend",
    "cpu",
    "sweep",
    "--hidden",
    "4",
    "--batch",
    "4",
    "--steps",
    "6",
    "--t-max",
    "6",
    "--finetune-steps",
    "4",
    "--seeds",
    "1,2",
    "--delays",
    "5,20",
    "--trials",
    "16",
    "--eval-batch",
    "16",
];

fn sweep(out: &Path, extra: &[&str]) -> Output {
    let mut args = SWEEP.to_vec();
    args.extend(["--out", out.to_str().unwrap()]);
    // The lists append when given twice: defaults only where the test gives none.
    for (flag, default) in [
        ("--lambdas", "0,0.05"),
        ("--targets", "slow-points,class-means"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend(extra);
    memrnn(&args)
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn sweep_shards_merge_and_workers_give_one_report() {
    let one = tmp("one");
    let o = sweep(&one, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("class-means-l0.05") && text(&o).contains("Δ acc@20"),
        "{}",
        text(&o)
    );
    let want = read(one.join("sweep.json"));

    let two = tmp("workers");
    let o = sweep(&two, &["--workers", "2", "--threads", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read(two.join("sweep.json")), want);

    let (s0, s1, m) = (tmp("s0"), tmp("s1"), tmp("merged"));
    for (d, sh) in [(&s0, "0/2"), (&s1, "1/2")] {
        let o = sweep(d, &["--shard", sh]);
        assert!(
            o.status.success() && text(&o).contains("merge"),
            "{}",
            text(&o)
        );
    }
    let o = memrnn(&[
        "--quiet",
        "sweep",
        "merge",
        s0.to_str().unwrap(),
        s1.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read(m.join("sweep.json")), want);

    for (extra, want) in [
        (&["--lambdas", "0.01,0.1"][..], "include 0"),
        (&["--targets", "fast"][..], "unknown target"),
        (&["--shard", "2/2"][..], "--shard"),
        (&["--seed", "7"][..], "--seeds"),
        (&["--workers", "0"][..], "--workers 0"),
    ] {
        let o = sweep(&tmp("bad"), extra);
        assert!(
            !o.status.success() && text(&o).contains(want),
            "{extra:?}: {}",
            text(&o)
        );
    }
    for d in [one, two, s0, s1, m] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn study_shards_merge_into_one_report() {
    let base = [
        "--quiet",
        "--backend",
        "cpu",
        "study",
        "--cells",
        "gru,lstm",
        "--curricula",
        "none",
        "--seeds",
        "1,2",
        "--hidden",
        "4",
        "--batch",
        "4",
        "--steps",
        "4",
        "--t-max",
        "6",
        "--long-delays",
        "10,30",
        "--eval-trials",
        "16",
    ];
    let run = |out: &Path, extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend(["--out", out.to_str().unwrap()]);
        a.extend(extra);
        memrnn(&a)
    };
    let one = tmp("study-one");
    let o = run(&one, &[]);
    assert!(
        o.status.success() && text(&o).contains("pooled"),
        "{}",
        text(&o)
    );
    let (s0, s1, m) = (tmp("study-s0"), tmp("study-s1"), tmp("study-m"));
    for (d, sh) in [(&s0, "0/2"), (&s1, "1/2")] {
        let o = run(d, &["--shard", sh]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = memrnn(&[
        "--quiet",
        "study",
        "merge",
        s1.to_str().unwrap(),
        s0.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read(m.join("study.json")), read(one.join("study.json")));
    for d in [one, s0, s1, m] {
        let _ = std::fs::remove_dir_all(d);
    }
}
