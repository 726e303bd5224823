//! The reference against central finite differences in f64 (MATH.md §3: relative error
//! below 1e-6), every cell, awkward shapes, every gradient: parameters, `s_0`, inputs,
//! the speed's state and parameter gradients, and the Jacobian.

use memrnn_core::{CellDims, CellKind, Real, SeqShape, SeqUpstream};
use memrnn_cpu::reference;
use memrnn_testkit::{assert_close, awkward_cases, random_params, rng, test_seed, uniform};

/// A scalar loss of the sequence: `Σ_t Σ G_t ⊙ h_t` over a random subset of steps (the
/// others masked out) plus `Σ G_f ⊙ s_T`.
struct Loss {
    dh_seq: Vec<f64>,
    ds_final: Vec<f64>,
}

impl Loss {
    fn value(
        &self,
        cell: &CellDims,
        shape: SeqShape,
        params: &[f64],
        x: &[f64],
        s0: &[f64],
    ) -> f64 {
        let f = reference::seq_forward(cell, params, shape, x, Some(s0)).unwrap();
        let a: f64 = f.h_seq.iter().zip(&self.dh_seq).map(|(h, g)| h * g).sum();
        let b: f64 = f
            .s_final
            .iter()
            .zip(&self.ds_final)
            .map(|(s, g)| s * g)
            .sum();
        a + b
    }
}

/// Central differences of `f` with respect to every entry of `v`.
fn numeric_grad(v: &[f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut w = v.to_vec();
    (0..v.len())
        .map(|i| {
            let eps = 1e-6 * v[i].abs().max(1.0);
            w[i] = v[i] + eps;
            let hi = f(&w);
            w[i] = v[i] - eps;
            let lo = f(&w);
            w[i] = v[i];
            (hi - lo) / (2.0 * eps)
        })
        .collect()
}

#[test]
fn sequence_gradients_match_finite_differences() {
    for kind in CellKind::ALL {
        for case in awkward_cases(kind) {
            let (cell, shape) = (case.cell, case.shape);
            let seed = test_seed(&format!("fd-seq-{kind}-{cell:?}-{shape:?}"), 1);
            let mut r = rng(seed);
            let params: Vec<f64> = random_params(&mut r, &cell, 2.0);
            let x: Vec<f64> = uniform(&mut r, shape.rows() * cell.input, -1.0, 1.0);
            let s0: Vec<f64> = uniform(&mut r, shape.batch * cell.state_size(), -0.8, 0.8);
            // Loss on a random subset of steps: each step kept with probability 1/2.
            let mut dh_seq: Vec<f64> = uniform(&mut r, shape.rows() * cell.hidden, -1.0, 1.0);
            let keep: Vec<f64> = uniform(&mut r, shape.steps, 0.0, 1.0);
            for t in 0..shape.steps {
                if keep[t] < 0.5 {
                    let n = shape.batch * cell.hidden;
                    dh_seq[t * n..(t + 1) * n].iter_mut().for_each(|v| *v = 0.0);
                }
            }
            let loss = Loss {
                dh_seq,
                ds_final: uniform(&mut r, shape.batch * cell.state_size(), -1.0, 1.0),
            };
            let fwd = reference::seq_forward(&cell, &params, shape, &x, Some(&s0)).unwrap();
            let g = reference::seq_backward(
                &cell,
                &params,
                shape,
                &x,
                &fwd,
                SeqUpstream {
                    dh_seq: Some(&loss.dh_seq),
                    ds_final: Some(&loss.ds_final),
                },
                true,
            )
            .unwrap();
            let what = format!(
                "{kind} I{} H{} B{} T{}",
                cell.input, cell.hidden, shape.batch, shape.steps
            );
            let num_p = numeric_grad(&params, |p| loss.value(&cell, shape, p, &x, &s0));
            assert_close(&format!("{what} dparams"), &g.dparams, &num_p, 1e-6, seed);
            let num_s0 = numeric_grad(&s0, |s| loss.value(&cell, shape, &params, &x, s));
            assert_close(&format!("{what} ds0"), &g.ds0, &num_s0, 1e-6, seed);
            let num_x = numeric_grad(&x, |xv| loss.value(&cell, shape, &params, xv, &s0));
            assert_close(
                &format!("{what} dx"),
                g.dx.as_ref().unwrap(),
                &num_x,
                1e-6,
                seed,
            );
        }
    }
}

#[test]
fn speed_gradients_and_jacobian_match_finite_differences() {
    for kind in CellKind::ALL {
        for (i, h) in [(1, 1), (3, 5), (4, 9)] {
            let cell = CellDims::new(kind, i, h).unwrap();
            let n = 3;
            let seed = test_seed(&format!("fd-speed-{kind}-{i}-{h}"), 2);
            let mut r = rng(seed);
            let params: Vec<f64> = random_params(&mut r, &cell, 2.0);
            let states: Vec<f64> = uniform(&mut r, n * cell.state_size(), -0.9, 0.9);
            let x: Vec<f64> = uniform(&mut r, n * cell.input, -1.0, 1.0);
            let reference::RefSpeedGrad {
                speed: speeds,
                dstate,
                dparams,
            } = reference::step_speed_grad(&cell, &params, &states, &x, n, true).unwrap();
            let total = |p: &[f64], s: &[f64]| -> f64 {
                reference::step_speed(&cell, p, s, &x, n)
                    .unwrap()
                    .iter()
                    .sum()
            };
            let plain = reference::step_speed(&cell, &params, &states, &x, n).unwrap();
            assert_close(
                "step_speed vs step_speed_grad's speed",
                &speeds,
                &plain,
                1e-14,
                seed,
            );
            let num_s = numeric_grad(&states, |s| total(&params, s));
            assert_close(&format!("{kind} dS/ds"), &dstate, &num_s, 1e-6, seed);
            let num_p = numeric_grad(&params, |p| total(p, &states));
            assert_close(
                &format!("{kind} dS/dθ"),
                dparams.as_ref().unwrap(),
                &num_p,
                1e-6,
                seed,
            );

            // Jacobian: column j is ∂F/∂s_j, by central differences of one step.
            let sd = cell.state_size();
            let jac = reference::step_jacobian(&cell, &params, &states, &x, n).unwrap();
            let p = cell.layout().split(&params);
            let mut num_j = vec![0.0; n * sd * sd];
            let mut plus = vec![0.0; sd];
            let mut minus = vec![0.0; sd];
            for k in 0..n {
                let xk = &x[k * cell.input..(k + 1) * cell.input];
                let mut s = states[k * sd..(k + 1) * sd].to_vec();
                for j in 0..sd {
                    let v = s[j];
                    let eps = 1e-6;
                    s[j] = v + eps;
                    reference::step(&cell, &p, &s, xk, &mut plus);
                    s[j] = v - eps;
                    reference::step(&cell, &p, &s, xk, &mut minus);
                    s[j] = v;
                    for i in 0..sd {
                        num_j[(k * sd + i) * sd + j] = (plus[i] - minus[i]) / (2.0 * eps);
                    }
                }
            }
            assert_close(&format!("{kind} Jacobian"), &jac, &num_j, 1e-6, seed);
        }
    }
}

#[test]
fn f32_reference_agrees_with_f64() {
    for kind in CellKind::ALL {
        for case in awkward_cases(kind) {
            let (cell, shape) = (case.cell, case.shape);
            let seed = test_seed(&format!("f32-f64-{kind}-{cell:?}"), 3);
            let mut r = rng(seed);
            let params: Vec<f64> = random_params(&mut r, &cell, 1.0);
            let x: Vec<f64> = uniform(&mut r, shape.rows() * cell.input, -1.0, 1.0);
            let f64_out = reference::seq_forward(&cell, &params, shape, &x, None).unwrap();
            let p32: Vec<f32> = memrnn_core::real::convert(&params);
            let x32: Vec<f32> = memrnn_core::real::convert(&x);
            let f32_out = reference::seq_forward(&cell, &p32, shape, &x32, None).unwrap();
            assert_close(
                "h_seq f32 vs f64",
                &f32_out.h_seq,
                &f64_out.h_seq,
                1e-5,
                seed,
            );
            let _ = f32::from_f64(0.0);
        }
    }
}

#[test]
fn shape_errors_are_reported_not_panicked() {
    let cell = CellDims::new(CellKind::Gru, 3, 4).unwrap();
    let shape = SeqShape::new(2, 2).unwrap();
    let params = vec![0.0f64; cell.layout().len()];
    let err = reference::seq_forward(&cell, &params, shape, &[0.0; 11], None).unwrap_err();
    assert!(err.to_string().contains("x"), "{err}");
    let err = reference::seq_forward(&cell, &params[1..], shape, &[0.0; 12], None).unwrap_err();
    assert!(err.to_string().contains("params"), "{err}");
    let err =
        reference::seq_forward(&cell, &params, shape, &[0.0; 12], Some(&[0.0; 7])).unwrap_err();
    assert!(err.to_string().contains("s0"), "{err}");
}
