//! Candidates, serialisation and bad input.

#![allow(clippy::needless_range_loop)] // index-heavy closed forms read better with indices

mod common;

use common::*;
use memrnn_core::checkpoint::read_tensors;
use memrnn_core::{CellDims, CellKind, Error, Model};
use memrnn_cpu::CpuBackend;
use memrnn_slowpoints::{
    class_mean_states, find_slow_points, format_table, sample_candidates, summary_json,
    write_safetensors, write_summary_json, FinderConfig, Summary,
};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("memrnn-slowpoints-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn sampled_candidates_come_from_the_trajectories() {
    let s = 4;
    let states: Vec<f32> = (0..10 * s).map(|i| i as f32).collect();
    let a = sample_candidates(&states, s, 6, 0.0, 7).unwrap();
    assert_eq!(a.len(), 6 * s);
    let mut rows: Vec<usize> = a.chunks_exact(s).map(|r| r[0] as usize / s).collect();
    for (r, row) in rows.iter().zip(a.chunks_exact(s)) {
        assert_eq!(row, &states[r * s..(r + 1) * s]);
    }
    rows.sort_unstable();
    rows.dedup();
    assert_eq!(rows.len(), 6, "without replacement while k ≤ N");
    assert_eq!(
        a,
        sample_candidates(&states, s, 6, 0.0, 7).unwrap(),
        "seeded"
    );
    assert_ne!(a, sample_candidates(&states, s, 6, 0.0, 8).unwrap());
    // More than N: every row at least once.
    let b = sample_candidates(&states, s, 25, 0.0, 1).unwrap();
    let mut seen = [0usize; 10];
    for row in b.chunks_exact(s) {
        seen[row[0] as usize / s] += 1;
    }
    assert!(seen.iter().all(|&c| c >= 2), "{seen:?}");
    // Noise: zero mean, the given spread.
    let flat = vec![0.5f32; 1000 * s];
    let c = sample_candidates(&flat, s, 1000, 0.1, 3).unwrap();
    let n = c.len() as f64;
    let mean = c.iter().map(|&v| v as f64 - 0.5).sum::<f64>() / n;
    let sd = (c
        .iter()
        .map(|&v| (v as f64 - 0.5 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    assert!(
        mean.abs() < 0.01 && (sd - 0.1).abs() < 0.01,
        "mean {mean} sd {sd}"
    );
}

#[test]
fn class_means_average_each_label() {
    let states = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let m = class_mean_states(&states, 2, &[3, 1, 3, 1]).unwrap();
    assert_eq!(m.classes, vec![1, 3]);
    assert_eq!(m.counts, vec![2, 2]);
    assert_eq!(m.means, vec![5.0, 6.0, 3.0, 4.0]);
    assert!(class_mean_states(&states, 2, &[0, 1]).is_err());
}

fn small_report() -> (Model, memrnn_slowpoints::SlowPointReport) {
    let w = [2.0, 0.5];
    let c = [0.0, c_for(0.5, 0.3)];
    let mut net = diag_rnn(&w, &c);
    net.model.readout = Some(identity_readout(2));
    let cands = spread_candidates(32, 2);
    let r = find_slow_points(
        &CpuBackend::new(),
        &net.model,
        &net.x_bar,
        &cands,
        &FinderConfig::default(),
    )
    .unwrap();
    (net.model, r)
}

#[test]
fn reports_serialise_to_safetensors_json_and_a_table() {
    let (_, report) = small_report();
    let p = report.points.len();
    assert_eq!(p, 3, "{report:?}");
    let path = tmp("points.safetensors");
    write_safetensors(&report, &path).unwrap();
    let (t, meta) = read_tensors(&path).unwrap();
    assert_eq!(t["states"].shape, vec![p, 2]);
    assert_eq!(t["jacobians"].shape, vec![p, 2, 2]);
    assert_eq!(t["eigenvalues_re"].shape, vec![p, 2]);
    assert_eq!(t["speed_sq"].data[0], report.points[0].speed_sq as f64);
    assert_eq!(t["stable"].data.iter().filter(|&&v| v == 1.0).count(), 2);
    assert_eq!(t["input"].shape, vec![2]);
    assert_eq!(meta["memrnn.cell"], "rnn");
    let cfg: FinderConfig = serde_json::from_str(&meta["memrnn.slowpoints.config"]).unwrap();
    assert_eq!(cfg, report.config);

    let json = summary_json(&report).unwrap();
    let s: Summary = serde_json::from_str(&json).unwrap();
    assert_eq!(s.points.len(), p);
    assert_eq!(s.counts, report.counts);
    assert_eq!(s.points[0].class, report.points[0].class);
    let jpath = tmp("points.json");
    write_summary_json(&report, &jpath).unwrap();
    assert!(std::fs::read_to_string(&jpath)
        .unwrap()
        .contains("\"near_unit\""));

    let table = format_table(&report);
    assert_eq!(table.lines().count(), 2 + p, "{table}");
    assert!(
        table.contains("max|λ|") && table.contains("yes") && table.contains("no"),
        "{table}"
    );
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(jpath);
}

#[test]
fn an_empty_report_still_writes() {
    let (model, mut report) = small_report();
    report.points.clear();
    let path = tmp("empty.safetensors");
    write_safetensors(&report, &path).unwrap();
    let (t, _) = read_tensors(&path).unwrap();
    assert_eq!(t["states"].shape, vec![0, model.cell.state_size()]);
    assert!(format_table(&report).lines().count() == 2);
    let _ = std::fs::remove_file(path);
}

fn expect_err(r: Result<memrnn_slowpoints::SlowPointReport, Error>, needle: &str) {
    match r {
        Ok(_) => panic!("expected an error containing {needle:?}"),
        Err(e) => assert!(e.to_string().contains(needle), "{e} (wanted {needle:?})"),
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let be = CpuBackend::new();
    let cfg = FinderConfig::default();
    let net = diag_rnn(&[0.5, 0.5, 0.5], &[0.0, 0.1, 0.2]);
    let (m, x) = (&net.model, &net.x_bar);
    expect_err(
        find_slow_points(&be, m, x, &[], &cfg),
        "at least one candidate",
    );
    let mut nan = spread_candidates(2, 3);
    nan[4] = f32::NAN;
    expect_err(
        find_slow_points(&be, m, x, &nan, &cfg),
        "candidates contains a non-finite value",
    );
    expect_err(
        find_slow_points(&be, m, x, &[0.1; 5], &cfg),
        "shape mismatch for candidates",
    );
    expect_err(
        find_slow_points(
            &be,
            m,
            x,
            &[0.1; 6],
            &FinderConfig {
                dedup_tol: -1.0,
                ..cfg
            },
        ),
        "dedup_tol",
    );
    expect_err(find_slow_points(&be, m, &[0.0; 3], &[0.1; 6], &cfg), "x̄");
    expect_err(
        find_slow_points(&be, m, &[f32::NAN, 0.0], &[0.1; 6], &cfg),
        "non-finite",
    );
    // An LSTM's states are [h | c]: H values per candidate are not enough.
    let lstm = Model::init(CellDims::new(CellKind::Lstm, 2, 3).unwrap(), 1);
    expect_err(find_slow_points(&be, &lstm, x, &[0.1; 9], &cfg), "[h | c]");
    // A model of the wrong cell: GRU parameters labelled as an RNN.
    let gru = Model::init(CellDims::new(CellKind::Gru, 2, 3).unwrap(), 1);
    let wrong = Model {
        cell: CellDims::new(CellKind::Rnn, 2, 3).unwrap(),
        params: gru.params,
        readout: None,
    };
    expect_err(
        find_slow_points(&be, &wrong, x, &[0.1; 6], &cfg),
        "parameters of a rnn cell",
    );
    // Candidate helpers.
    assert!(sample_candidates(&[], 3, 4, 0.0, 1).is_err());
    assert!(sample_candidates(&[0.0; 6], 3, 0, 0.0, 1).is_err());
    assert!(sample_candidates(&[0.0; 6], 4, 1, 0.0, 1).is_err());
    assert!(sample_candidates(&[0.0; 6], 3, 1, f32::NAN, 1).is_err());
    assert!(sample_candidates(&[0.0, f32::INFINITY, 0.0], 3, 1, 0.0, 1).is_err());
}
