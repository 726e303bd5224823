//! The λ sweep on tiny networks: every network once, the report identical whether the
//! networks run one after another or side by side, in one run or in shards merged
//! afterwards, or in a run interrupted after one network and resumed.

use memrnn_cpu::CpuBackend;
use memrnn_train::eval::EvalConfig;
use memrnn_train::idx::{bundled_data_dir, load_mnist_dir};
use memrnn_train::jobs::Shard;
use memrnn_train::sweep::{merge, run_sweep, SweepConfig, SweepOutcome, Target};
use memrnn_train::task::DigitSet;
use memrnn_train::train::TrainConfig;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn set() -> &'static DigitSet {
    static S: OnceLock<DigitSet> = OnceLock::new();
    S.get_or_init(|| DigitSet::new(load_mnist_dir(&bundled_data_dir()).unwrap()).unwrap())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-sweep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn tiny(out: &Path) -> SweepConfig {
    let mut train = TrainConfig {
        hidden: 4,
        batch: 4,
        steps: 6,
        log_every: 2,
        checkpoint_every: 3,
        ..TrainConfig::default()
    };
    train.task.t_max = 6;
    SweepConfig {
        train,
        seeds: vec![3, 5, 8],
        lambdas: vec![0.0, 0.05],
        targets: vec![Target::SlowPoints, Target::Refound { every: 2 }],
        finetune_steps: 4,
        finetune_lr: 1e-3,
        eval: EvalConfig {
            delays: vec![5, 12, 30],
            trials: 24,
            batch: 12,
            chunk: 8,
            read_span: 4,
            seed: 9,
        },
        out_dir: out.to_path_buf(),
        shard: Shard::default(),
        max_networks: None,
        ensemble: None,
        progress: false,
    }
}

fn cpu(threads: usize) -> CpuBackend {
    CpuBackend::new().with_threads(threads).unwrap()
}

fn report(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("sweep.json")).unwrap()
}

fn finished(o: SweepOutcome) -> Box<memrnn_train::sweep::SweepReport> {
    match o {
        SweepOutcome::Finished(r) => r,
        other => panic!("expected a finished sweep, got {other:?}"),
    }
}

#[test]
fn sweep_parallel_sharded_and_resumed_runs_give_the_same_report() {
    // One run, one worker with two threads.
    let a = tmp("serial");
    let r = finished(run_sweep(&[cpu(2)], set(), &tiny(&a)).unwrap());
    // base, control, 2 targets × 1 positive λ.
    assert_eq!(r.groups.len(), 4);
    assert_eq!(r.delays, vec![5, 12, 30]);
    for g in &r.groups {
        assert_eq!(g.accuracy.len(), 3);
        assert_eq!(g.longest_per_seed.len(), 3);
        assert!(g
            .accuracy
            .iter()
            .all(|m| m.ci95.is_some() && m.mean.is_finite()));
        if g.target.is_some() {
            assert_eq!(g.diff_to_control.len(), 3);
            // The paired differences are the per-seed differences of the accuracies.
            let control = &r.groups[1].longest_per_seed;
            for ((d, a), c) in g
                .diff_longest_per_seed
                .iter()
                .zip(&g.longest_per_seed)
                .zip(control)
            {
                assert!((d - (a - c)).abs() < 1e-12);
            }
        } else {
            assert!(g.diff_to_control.is_empty());
        }
    }
    let text = std::fs::read_to_string(a.join("sweep.txt")).unwrap();
    assert!(
        text.contains("control") && text.contains("refound-2-l0.05"),
        "{text}"
    );
    for f in [
        "delay_slow-points.svg",
        "delay_refound-2.svg",
        "longest_vs_lambda.svg",
    ] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    let want = report(&a);

    // Two workers of one thread each: the same bytes.
    let b = tmp("parallel");
    finished(run_sweep(&[cpu(1), cpu(1)], set(), &tiny(&b)).unwrap());
    assert_eq!(report(&b), want, "parallel workers changed the report");

    // The base networks were trained as one ensemble above; one after another, every
    // network's result file is the same, byte for byte.
    let d = tmp("one-by-one");
    let mut c = tiny(&d);
    c.ensemble = Some(1);
    finished(run_sweep(&[cpu(2)], set(), &c).unwrap());
    let mut files = 0;
    for f in std::fs::read_dir(a.join("nets")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            let name = p.file_name().unwrap();
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(d.join("nets").join(name)).unwrap(),
                "{name:?} differs from the ensemble's"
            );
            files += 1;
        }
    }
    assert_eq!(files, 12);
    assert_eq!(report(&d), want, "one by one, the report differs");
    let _ = std::fs::remove_dir_all(d);

    // Two shards (seeds 3, 8 and seed 5), merged: the same bytes.
    let (s0, s1, m) = (tmp("shard0"), tmp("shard1"), tmp("merged"));
    for (dir, index) in [(&s0, 0), (&s1, 1)] {
        let mut c = tiny(dir);
        c.shard = Shard { index, count: 2 };
        match run_sweep(&[cpu(1)], set(), &c).unwrap() {
            SweepOutcome::Partial { done, total } => {
                assert_eq!((done, total), (4 * (2 - index), 4 * (2 - index)))
            }
            other => panic!("a shard wrote a report: {other:?}"),
        }
        assert!(!dir.join("sweep.json").exists());
    }
    // A shard missing, or given twice, is refused by name.
    let e = merge(std::slice::from_ref(&s0), &m)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1/2") && e.contains("missing"), "{e}");
    let e = merge(&[s0.clone(), s0.clone()], &m)
        .unwrap_err()
        .to_string();
    assert!(e.contains("twice"), "{e}");
    merge(&[s1.clone(), s0.clone()], &m).unwrap();
    assert_eq!(report(&m), want, "shard + merge differs from one run");

    // Interrupted after one network, then resumed: the base is not retrained.
    let c = tmp("resume");
    let mut cfg = tiny(&c);
    cfg.max_networks = Some(1);
    match run_sweep(&[cpu(2)], set(), &cfg).unwrap() {
        SweepOutcome::Partial { done: 1, total: 12 } => {}
        other => panic!("expected 1 of 12 networks, got {other:?}"),
    }
    let base = c.join("nets/s3-base.json");
    let ck = c.join("nets/s3-base.safetensors");
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let (t_json, t_ck) = (stamp(&base), stamp(&ck));
    std::thread::sleep(std::time::Duration::from_millis(20));
    cfg.max_networks = None;
    finished(run_sweep(&[cpu(2)], set(), &cfg).unwrap());
    assert_eq!(
        (stamp(&base), stamp(&ck)),
        (t_json, t_ck),
        "the finished base was retrained"
    );
    assert_eq!(report(&c), want, "a resumed sweep differs from one run");
    let lines = std::fs::read_to_string(c.join("timing.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        12,
        "each network trained once:\n{lines}"
    );

    // Resuming with other settings is refused.
    let mut other = tiny(&c);
    other.finetune_steps = 5;
    let e = run_sweep(&[cpu(2)], set(), &other).unwrap_err().to_string();
    assert!(e.contains("other settings"), "{e}");
    if std::env::var_os("KEEP").is_some() {
        return;
    }
    for d in [a, b, s0, s1, m, c] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn sweep_settings_that_cannot_work_are_refused() {
    let d = tmp("refuse");
    type Change = Box<dyn Fn(&mut SweepConfig)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|c| c.lambdas = vec![0.01, 0.1]), "include 0"),
        (Box::new(|c| c.lambdas = vec![0.0]), "positive λ"),
        (Box::new(|c| c.lambdas = vec![0.0, 0.01, 0.01]), "twice"),
        (Box::new(|c| c.seeds = vec![]), "at least one seed"),
        (
            Box::new(|c| c.targets = vec![Target::Refound { every: 4 }]),
            "never re-find",
        ),
        (Box::new(|c| c.max_networks = Some(0)), "--max-networks 0"),
        (Box::new(|c| c.lambdas = vec![0.0, f32::NAN]), "λ"),
    ];
    for (change, want) in cases {
        let mut c = tiny(&d);
        change(&mut c);
        let e = run_sweep(&[cpu(1)], set(), &c).unwrap_err().to_string();
        assert!(e.contains(want), "expected {want:?} in: {e}");
    }
    for (s, t) in [
        ("slow-points", Target::SlowPoints),
        ("class-means", Target::ClassMeans),
        ("centre-of-mass", Target::ClassMeans),
        ("trajectory", Target::Trajectory),
        ("refound-50", Target::Refound { every: 50 }),
    ] {
        assert_eq!(s.parse::<Target>().unwrap(), t);
    }
    for bad in ["refound-0", "refound-x", "fast-points"] {
        assert!(bad.parse::<Target>().is_err(), "{bad}");
    }
    let _ = std::fs::remove_dir_all(d);
}
