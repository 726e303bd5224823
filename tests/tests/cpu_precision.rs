//! The CPU fast path with `W_hh` stored in bf16 / f16: bit for bit the f32 path run on
//! `W_hh` rounded to that format (widening a half value to f32 is exact and the
//! arithmetic is the same f32 arithmetic in the same order, so nothing but the storage
//! may differ), forward and backward, every cell, awkward shapes and the small-batch
//! unit split, every SIMD level, 1 and 2 threads, scratch NaN-poisoned; the slow-point
//! searches likewise; bad combinations give clear errors. Each half-precision run is made
//! with the panels in each format (`PanelFormat::Storage`: the half-width weights widened
//! in registers; `PanelFormat::F32`: f32 panels of the rounded values; `Auto` picks one
//! of these by cache size), and every format must give the same bits.

use memrnn_core::backend::{SlowPointConfig, SlowPointSearch};
use memrnn_core::{Backend, CellDims, CellKind, Error, Precision, SeqShape, SeqUpstream};
use memrnn_cpu::{CpuBackend, PanelFormat, SimdLevel};
use memrnn_testkit::{awkward_cases, random_params, rng, test_seed, uniform, Case};

/// The awkward shapes plus one that takes the backward's unit split on two threads
/// (batch below 16, `Hp/16 ≥ 2`) and one large enough for several row and unit tiles.
fn cases(kind: CellKind) -> Vec<Case> {
    let mut v = awkward_cases(kind);
    for (i, h, b, t) in [(5, 40, 3, 4), (17, 37, 19, 3)] {
        v.push(Case {
            cell: CellDims::new(kind, i, h).unwrap(),
            shape: SeqShape::new(t, b).unwrap(),
        });
    }
    v
}

/// A backend with the panels in the half-width format whenever the precision has one, so
/// that the widening code is what these tests run (the default would choose f32 panels
/// at these small sizes).
fn backend(level: SimdLevel, threads: usize, precision: Precision) -> CpuBackend {
    backend_with(level, threads, precision, PanelFormat::Storage)
}

fn backend_with(
    level: SimdLevel,
    threads: usize,
    precision: Precision,
    format: PanelFormat,
) -> CpuBackend {
    CpuBackend::new()
        .with_simd(level)
        .unwrap()
        .with_threads(threads)
        .unwrap()
        .with_poisoned_scratch(true)
        .with_precision(precision)
        .with_panel_format(format)
}

/// Forward and backward (every upstream, `dx`), all outputs flattened.
fn run(b: &CpuBackend, case: &Case, params: &[f32], seed: u64) -> Vec<Vec<f32>> {
    let (cell, shape) = (case.cell, case.shape);
    let mut r = rng(seed);
    let x: Vec<f32> = uniform(&mut r, shape.rows() * cell.input, -1.0, 1.0);
    let s0: Vec<f32> = uniform(&mut r, shape.batch * cell.state_size(), -0.9, 0.9);
    let dh: Vec<f32> = uniform(&mut r, shape.rows() * cell.hidden, -1.0, 1.0);
    let dsf: Vec<f32> = uniform(&mut r, shape.batch * cell.state_size(), -1.0, 1.0);
    let params = params.to_vec();
    let fwd = b.seq_forward(&cell, &params, shape, &x, Some(&s0)).unwrap();
    let up = SeqUpstream {
        dh_seq: Some(&dh),
        ds_final: Some(&dsf),
    };
    let g = b
        .seq_backward(&cell, &params, shape, &x, &fwd, up, true)
        .unwrap();
    vec![
        fwd.h_seq,
        fwd.s_final,
        g.dparams,
        g.ds0,
        g.dx.expect("dx was asked for"),
    ]
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter()
        .map(|o| o.iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn half_storage_equals_f32_on_rounded_weights_bit_for_bit() {
    for kind in CellKind::ALL {
        for (c, case) in cases(kind).into_iter().enumerate() {
            let seed = test_seed(&format!("precision-{kind}-{c}"), 0x15);
            let raw: Vec<f32> = random_params(&mut rng(seed), &case.cell, 1.5);
            for prec in [Precision::Bf16, Precision::F16] {
                let rounded = prec.round_recurrent(&case.cell, &raw).unwrap().into_owned();
                for level in SimdLevel::available() {
                    for threads in [1, 2] {
                        let what = format!(
                            "{kind} {:?} {:?} {prec} {level:?} {threads} thread(s) (seed {seed})",
                            case.cell, case.shape
                        );
                        let f32_run = run(
                            &backend(level, threads, Precision::F32),
                            &case,
                            &rounded,
                            seed,
                        );
                        for format in [PanelFormat::Storage, PanelFormat::F32, PanelFormat::Auto] {
                            let half = run(
                                &backend_with(level, threads, prec, format),
                                &case,
                                &raw,
                                seed,
                            );
                            for (o, (a, b)) in bits(&half).iter().zip(bits(&f32_run)).enumerate() {
                                assert_eq!(a, &b, "{what} {format:?} panels: output {o} differs");
                            }
                            assert!(
                                half.iter().flatten().all(|v| v.is_finite()),
                                "{what} {format:?} panels: non-finite output"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The rounding is real: half storage changes the outputs against f32 on the raw
/// weights (so the test above does not compare the f32 path with itself).
#[test]
fn half_storage_differs_from_f32_on_raw_weights() {
    let case = cases(CellKind::Gru).pop().unwrap();
    let seed = test_seed("precision-differs", 3);
    let raw: Vec<f32> = random_params(&mut rng(seed), &case.cell, 1.5);
    let level = SimdLevel::detect();
    let f32_out = run(&backend(level, 1, Precision::F32), &case, &raw, seed);
    for prec in [Precision::Bf16, Precision::F16] {
        let half = run(&backend(level, 1, prec), &case, &raw, seed);
        assert_ne!(bits(&half)[0], bits(&f32_out)[0], "{prec} (seed {seed})");
    }
}

#[test]
fn slow_point_search_in_half_precision_equals_f32_on_rounded_weights() {
    for kind in CellKind::ALL {
        let cell = CellDims::new(kind, 3, 19).unwrap();
        let seed = test_seed(&format!("precision-slowpoints-{kind}"), 7);
        let mut r = rng(seed);
        let raw: Vec<f32> = random_params(&mut r, &cell, 1.2);
        let x: Vec<f32> = uniform(&mut r, cell.input, -1.0, 1.0);
        let k = 11;
        let cand: Vec<f32> = uniform(&mut r, k * cell.state_size(), -0.9, 0.9);
        let cfg = SlowPointConfig {
            max_iters: 40,
            ..SlowPointConfig::default()
        };
        let search = |b: &CpuBackend, params: &Vec<f32>| {
            let mut s = SlowPointSearch::new(b, &cell, &cand).unwrap();
            b.slow_point_iterations(&cell, params, &x, &mut s, &cfg)
                .unwrap();
            (s.states, s.status)
        };
        for prec in [Precision::Bf16, Precision::F16] {
            let rounded = prec.round_recurrent(&cell, &raw).unwrap().into_owned();
            let half = search(&backend(SimdLevel::detect(), 2, prec), &raw);
            let f32_run = search(&backend(SimdLevel::detect(), 2, Precision::F32), &rounded);
            assert_eq!(half.1, f32_run.1, "{kind} {prec} (seed {seed}): statuses");
            let (a, b): (Vec<u32>, Vec<u32>) = (
                half.0.iter().map(|v| v.to_bits()).collect(),
                f32_run.0.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(a, b, "{kind} {prec} (seed {seed}): states");
        }
    }
}

#[test]
fn bad_combinations_give_clear_errors() {
    let cell = CellDims::new(CellKind::Lstm, 2, 5).unwrap();
    let shape = SeqShape::new(2, 3).unwrap();
    let mut params: Vec<f32> = random_params(&mut rng(1), &cell, 1.0);
    params[cell.layout().range(memrnn_core::ParamBlock::WeightHh).start + 3] = 7.0e4;
    let x = vec![0.1f32; shape.rows() * cell.input];
    let f16 = backend(SimdLevel::detect(), 1, Precision::F16);
    let err = f16
        .seq_forward(&cell, &params, shape, &x, None)
        .err()
        .expect("W_hh beyond f16's range must be refused");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::InvalidArgument(_)) && msg.contains("W_hh[3]") && msg.contains("bf16"),
        "{msg}"
    );
    // bf16 has f32's range: the same weights run.
    let bf16 = backend(SimdLevel::detect(), 1, Precision::Bf16);
    let fwd = bf16.seq_forward(&cell, &params, shape, &x, None).unwrap();
    // A forward cache made in one precision is refused by a backward in another.
    let f32b = backend(SimdLevel::detect(), 1, Precision::F32);
    let dh = vec![0.5f32; shape.rows() * cell.hidden];
    let up = SeqUpstream {
        dh_seq: Some(&dh),
        ds_final: None,
    };
    let err = f32b
        .seq_backward(&cell, &params, shape, &x, &fwd, up, false)
        .expect_err("a bf16 cache in an f32 backward must be refused");
    assert!(err.to_string().contains("bf16"), "{err}");
}
