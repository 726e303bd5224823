//! The study on tiny networks: the report (rows, ρ per cell and pooled with bootstrap
//! intervals) is the same bytes whether the networks run one after another or side by
//! side, in one run or in shards merged afterwards, or interrupted and resumed.

use memrnn_core::CellKind;
use memrnn_cpu::CpuBackend;
use memrnn_train::idx::{bundled_data_dir, load_mnist_dir};
use memrnn_train::jobs::Shard;
use memrnn_train::study::{merge, run_study, StudyConfig, StudyOutcome, StudyReport};
use memrnn_train::task::{Curriculum, DigitSet};
use memrnn_train::train::TrainConfig;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn set() -> &'static DigitSet {
    static S: OnceLock<DigitSet> = OnceLock::new();
    S.get_or_init(|| DigitSet::new(load_mnist_dir(&bundled_data_dir()).unwrap()).unwrap())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-study-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn tiny(out: &Path) -> StudyConfig {
    let mut train = TrainConfig {
        hidden: 5,
        batch: 6,
        steps: 8,
        log_every: 4,
        checkpoint_every: 4,
        ..TrainConfig::default()
    };
    train.task.t_max = 6;
    StudyConfig {
        cells: vec![CellKind::Gru, CellKind::Lstm],
        curricula: vec![Curriculum::None],
        seeds: vec![1, 2, 3],
        train,
        long_delays: vec![12, 30],
        eval_trials: 30,
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
    std::fs::read_to_string(dir.join("study.json")).unwrap()
}

fn finished(o: StudyOutcome) -> Box<StudyReport> {
    match o {
        StudyOutcome::Finished(r) => r,
        other => panic!("expected a finished study, got {other:?}"),
    }
}

#[test]
fn study_parallel_sharded_and_resumed_runs_give_the_same_report() {
    let a = tmp("serial");
    let r = finished(run_study(&[cpu(2)], set(), &tiny(&a)).unwrap());
    assert_eq!(r.rows.len(), 6);
    // Pooled and per cell, at each long delay.
    let scopes: Vec<(&str, usize)> = r
        .correlations
        .iter()
        .filter(|c| c.indicator == "slow-point speed")
        .map(|c| (c.scope.as_str(), c.delay))
        .collect();
    assert_eq!(
        scopes,
        vec![
            ("pooled", 12),
            ("pooled", 30),
            ("gru", 12),
            ("gru", 30),
            ("lstm", 12),
            ("lstm", 30)
        ]
    );
    // The same for L̂, the largest Lyapunov exponent and the memory span, measured on
    // every network.
    assert_eq!(r.correlations.len(), 24);
    for row in &r.rows {
        assert!(
            row.lipschitz.is_some_and(|l| l.is_finite() && l > 0.0),
            "{row:?}"
        );
        assert!(row.lyapunov_max.is_some_and(f64::is_finite), "{row:?}");
        // The memory probe at lags 1, 2, 4, …, 30 (the longest delay).
        assert_eq!(row.memory.lags, vec![1, 2, 4, 8, 16, 30]);
        assert!(
            row.memory.accuracy.iter().all(|a| (0.0..=1.0).contains(a)),
            "{row:?}"
        );
    }
    for c in &r.correlations {
        assert_eq!(
            c.spearman.n,
            if c.scope == "pooled" { 6 } else { 3 },
            "{c:?}"
        );
        if let (Some(rho), Some((lo, hi))) = (c.spearman.rho, c.spearman.ci95) {
            assert!((-1.0..=1.0).contains(&rho) && lo <= hi, "{c:?}");
        }
    }
    let text = std::fs::read_to_string(a.join("study.txt")).unwrap();
    assert!(text.contains("pooled") && text.contains("acc@30"), "{text}");
    assert!(a.join("study.svg").is_file() && a.join("study_d12.svg").is_file());
    let want = report(&a);

    let b = tmp("parallel");
    finished(run_study(&[cpu(1), cpu(1)], set(), &tiny(&b)).unwrap());
    assert_eq!(report(&b), want, "parallel workers changed the report");

    // The networks of a cell were trained as one ensemble above; one after another, and
    // in ensembles of two, every network's result file is the same, byte for byte.
    for (tag, size) in [("one-by-one", Some(1)), ("pairs", Some(2))] {
        let d = tmp(tag);
        let mut c = tiny(&d);
        c.ensemble = size;
        finished(run_study(&[cpu(2)], set(), &c).unwrap());
        let mut files = 0;
        for f in std::fs::read_dir(a.join("nets")).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "json") {
                let name = p.file_name().unwrap();
                assert_eq!(
                    std::fs::read(&p).unwrap(),
                    std::fs::read(d.join("nets").join(name)).unwrap(),
                    "{tag}: {name:?} differs from the ensemble's"
                );
                files += 1;
            }
        }
        assert_eq!(files, 6);
        assert_eq!(
            report(&d),
            want,
            "{tag}: the report differs from the ensemble's"
        );
        let _ = std::fs::remove_dir_all(d);
    }
    let mut c = tiny(&b);
    c.ensemble = Some(0);
    let e = run_study(&[cpu(1)], set(), &c).unwrap_err().to_string();
    assert!(e.contains("--ensemble 0"), "{e}");

    // Three shards over six networks, merged in another order.
    let dirs: Vec<PathBuf> = (0..3).map(|i| tmp(&format!("shard{i}"))).collect();
    for (i, d) in dirs.iter().enumerate() {
        let mut c = tiny(d);
        c.shard = Shard { index: i, count: 3 };
        match run_study(&[cpu(1)], set(), &c).unwrap() {
            StudyOutcome::Partial { done: 2, total: 2 } => {}
            other => panic!("shard {i}: {other:?}"),
        }
    }
    let m = tmp("merged");
    let e = memrnn_train::sweep::merge(&dirs, &m)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a sweep"), "{e}");
    merge(&[dirs[2].clone(), dirs[0].clone(), dirs[1].clone()], &m).unwrap();
    assert_eq!(report(&m), want, "shards + merge differ from one run");

    // Interrupted after one network, resumed.
    let c = tmp("resume");
    let mut cfg = tiny(&c);
    cfg.max_networks = Some(1);
    match run_study(&[cpu(2)], set(), &cfg).unwrap() {
        StudyOutcome::Partial { done: 1, total: 6 } => {}
        other => panic!("{other:?}"),
    }
    let first = c.join("nets/gru-none-s1.safetensors");
    let t0 = std::fs::metadata(&first).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    cfg.max_networks = None;
    finished(run_study(&[cpu(1), cpu(1)], set(), &cfg).unwrap());
    assert_eq!(
        std::fs::metadata(&first).unwrap().modified().unwrap(),
        t0,
        "the finished network was retrained"
    );
    assert_eq!(report(&c), want, "a resumed study differs from one run");
    if std::env::var_os("KEEP").is_none() {
        for d in [a, b, m, c].into_iter().chain(dirs) {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
