//! A study of `--networks` networks (GRU, no curriculum, seeds 1..=N) on the CPU, trained
//! as one ensemble and one after another, side by side in one run, on the same backend:
//! first the training alone (the networks' steps, nothing written), then the whole
//! analysis of the trained networks alone (the study's per-class slow points, Levenberg–
//! Marquardt from each class's mean delay state, and its evaluation at the training delay
//! and twice it, 500 trials: `class_slow_points_ensemble` + `evaluate_ensemble` against
//! `class_slow_points_with` + `evaluate` network by network; the class means, computed
//! per network either way, are outside the clock), then the whole `memrnn study`
//! (training, slow points, evaluation, diagnostics, the report). Prints the seconds of
//! each and checks that both ways give the same networks (weights bit for bit), the same
//! slow points and accuracies (bit for bit) and the same per-network result files (byte
//! for byte); a difference is an error. `--analysis-only` stops after the analysis.
//!
//! `cargo run --release -p memrnn-benches --bin ensemble_study -- [--networks 8]
//!  [--threads N] [--hidden 32] [--batch 32] [--steps 300] [--t-max 20] [--analysis-only]`

use memrnn_core::{Backend, CellKind};
use memrnn_cpu::CpuBackend;
use memrnn_slowpoints::FinderConfig;
use memrnn_train::eval::{evaluate, evaluate_ensemble, EvalConfig};
use memrnn_train::idx::load_bundled;
use memrnn_train::slow::{class_slow_points_ensemble, class_slow_points_with};
use memrnn_train::study::{run_study, StudyConfig, StudyOutcome};
use memrnn_train::task::{Curriculum, DigitSet};
use memrnn_train::train::{TrainConfig, Trainer};
use memrnn_train::vset::class_mean_states;
use memrnn_train::EnsembleTrainer;
use memrnn_train::SpeedSet;
use std::path::Path;
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    let v = args.get(i + 1)?;
    Some(v.parse().unwrap_or_else(|_| {
        eprintln!("{name} {v}: not a valid value");
        std::process::exit(2)
    }))
}

fn fail(what: impl std::fmt::Display) -> ! {
    eprintln!("ensemble_study: {what}");
    std::process::exit(1)
}

/// The result files (`nets/*.json`) of a study folder, by name.
fn results(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("nets"))
        .unwrap_or_else(|e| fail(format!("{}: {e}", dir.display())))
        .filter_map(|f| f.ok().map(|f| f.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            (
                name.unwrap_or_default(),
                std::fs::read(&p).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let networks: u64 = arg(&args, "--networks").unwrap_or(8);
    let hidden: usize = arg(&args, "--hidden").unwrap_or(32);
    let batch: usize = arg(&args, "--batch").unwrap_or(32);
    let steps: u64 = arg(&args, "--steps").unwrap_or(300);
    let t_max: usize = arg(&args, "--t-max").unwrap_or(20);
    let mut b = CpuBackend::new();
    if let Some(n) = arg::<usize>(&args, "--threads") {
        b = b.with_threads(n).unwrap_or_else(|e| fail(e));
    }
    if networks == 0 {
        fail("--networks must be at least 1");
    }
    let set = DigitSet::new(load_bundled().unwrap_or_else(|e| fail(e))).unwrap_or_else(|e| fail(e));
    let mut train = TrainConfig {
        cell: CellKind::Gru,
        hidden,
        batch,
        steps,
        log_every: 50,
        checkpoint_every: steps,
        ..TrainConfig::default()
    };
    train.task.t_max = t_max;
    println!("backend: {}", b.name());
    println!("{networks} networks: GRU H {hidden}, batch {batch}, T {t_max}, {steps} steps each");

    // 1. Training alone.
    let cfgs: Vec<TrainConfig> = (1..=networks)
        .map(|seed| TrainConfig {
            seed,
            ..train.clone()
        })
        .collect();
    let clock = Instant::now();
    let mut ens = EnsembleTrainer::new(&b, &set, cfgs.clone()).unwrap_or_else(|e| fail(e));
    for (i, r) in ens
        .train_steps(steps)
        .unwrap_or_else(|e| fail(e))
        .into_iter()
        .enumerate()
    {
        if let Err(e) = r {
            fail(format!("ensemble member {i}: {e}"));
        }
    }
    let t_ens = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    let mut same = true;
    for (i, c) in cfgs.into_iter().enumerate() {
        let mut t = Trainer::new(&b, &set, c).unwrap_or_else(|e| fail(e));
        t.train_steps(steps, "none").unwrap_or_else(|e| fail(e));
        let (alone, member) = (t.model(), ens.members[i].model());
        same &= matches!((alone, member), (Ok(a), Ok(m)) if a == m);
    }
    let t_seq = clock.elapsed().as_secs_f64();
    println!("| training only | seconds | networks·steps/s |");
    println!("| --- | --- | --- |");
    for (mode, secs) in [("one ensemble", t_ens), ("one after another", t_seq)] {
        println!(
            "| {mode} | {secs:.2} | {:.1} |",
            (networks * steps) as f64 / secs
        );
    }
    if !same {
        fail("the ensemble's networks differ from the networks trained one after another");
    }
    println!("same networks: yes (weights bit for bit)");

    // 2. The analysis alone: slow points and evaluation, as the study runs them.
    let models: Vec<memrnn_core::Model> = ens
        .members
        .iter()
        .map(|t| t.model().unwrap_or_else(|e| fail(e)))
        .collect();
    let refs: Vec<&memrnn_core::Model> = models.iter().collect();
    let task = train.task;
    let means: Vec<SpeedSet> = models
        .iter()
        .zip(1..=networks)
        .map(|(m, seed)| {
            class_mean_states(&b, m, &set, &task, 500, 20, seed ^ 0x7E57)
                .unwrap_or_else(|e| fail(e))
        })
        .collect();
    let mean_refs: Vec<&SpeedSet> = means.iter().collect();
    let finder = FinderConfig::default();
    let eval = EvalConfig {
        delays: vec![t_max - 1, 2 * t_max],
        trials: 500,
        ..EvalConfig::default()
    };
    let clock = Instant::now();
    let slow_ens = class_slow_points_ensemble(&b, &refs, &task, &mean_refs, &finder)
        .unwrap_or_else(|e| fail(e));
    let eval_ens =
        evaluate_ensemble(&b, &refs, &set, &task, &eval, None).unwrap_or_else(|e| fail(e));
    let a_ens = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    let mut same = true;
    for (i, m) in models.iter().enumerate() {
        let slow = class_slow_points_with(&b, m, &task, &means[i], &finder);
        let ev = evaluate(&b, m, &set, &task, &eval, None);
        same &= match (&slow, &slow_ens[i]) {
            (Ok(a), Ok(e)) => a.speed_sq == e.speed_sq && a.iters == e.iters,
            _ => false,
        };
        same &= matches!((&ev, &eval_ens[i]), (Ok(a), Ok(e)) if a == e);
    }
    let a_seq = clock.elapsed().as_secs_f64();
    println!("| slow points + evaluation | seconds |");
    println!("| --- | --- |");
    for (mode, secs) in [("one ensemble", a_ens), ("one after another", a_seq)] {
        println!("| {mode} | {secs:.2} |");
    }
    if !same {
        fail("the ensemble's slow points or accuracies differ from the networks' own");
    }
    println!("same analysis: yes (slow points and accuracies bit for bit)");
    if args.iter().any(|a| a == "--analysis-only") {
        return;
    }

    // 3. The whole study.
    let root = std::env::temp_dir().join(format!("memrnn-ensemble-study-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut times = vec![];
    for (mode, size) in [("one ensemble", None), ("one after another", Some(1))] {
        let dir = root.join(if size.is_none() {
            "ensemble"
        } else {
            "sequential"
        });
        let cfg = StudyConfig {
            cells: vec![CellKind::Gru],
            curricula: vec![Curriculum::None],
            seeds: (1..=networks).collect(),
            train: train.clone(),
            long_delays: vec![2 * t_max],
            eval_trials: EvalConfig::default().trials.min(500),
            out_dir: dir.clone(),
            shard: Default::default(),
            max_networks: None,
            ensemble: size,
            progress: false,
        };
        let clock = Instant::now();
        match run_study(std::slice::from_ref(&b), &set, &cfg) {
            Ok(StudyOutcome::Finished(_)) => {}
            Ok(other) => fail(format!("{mode}: the study did not finish: {other:?}")),
            Err(e) => fail(format!("{mode}: {e}")),
        }
        times.push((mode, clock.elapsed().as_secs_f64(), dir));
    }
    println!("| whole study (train, slow points, evaluation, diagnostics) | seconds |");
    println!("| --- | --- |");
    for (mode, secs, _) in &times {
        println!("| {mode} | {secs:.2} |");
    }
    let (a, b2) = (results(&times[0].2), results(&times[1].2));
    if a.len() as u64 != networks || a != b2 {
        fail(format!(
            "the result files differ ({} and {} files; kept in {})",
            a.len(),
            b2.len(),
            root.display()
        ));
    }
    println!(
        "same results: yes ({} of {networks} result files identical)",
        a.len()
    );
    let _ = std::fs::remove_dir_all(&root);
}
