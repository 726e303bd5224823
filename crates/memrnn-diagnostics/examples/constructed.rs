//! Diagnoses two constructed tanh RNNs (`W_hh = w·I`, a cue then noise) and writes each
//! report and its plots: `cargo run -p memrnn-diagnostics --example constructed [DIR]`.

use memrnn_core::{Result, SeqShape};
use memrnn_cpu::CpuBackend;
use memrnn_diagnostics::constructed::tanh_rnn;
use memrnn_diagnostics::{
    diagnose, AttractorConfig, DiagnoseConfig, DiagnoseInputs, LyapunovConfig, MemoryConfig,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

fn main() -> Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/diagnostics-example".into()),
    );
    let (c, h, sigma) = (3usize, 8usize, 0.1f32);
    let i = c + h;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // Cue weights random, one private noise channel per unit.
    let mut w_ih = vec![0f32; h * i];
    for j in 0..h {
        for k in 0..c {
            w_ih[j * i + k] = rng.random_range(-1.0..1.0);
        }
        w_ih[j * i + c + j] = 1.0;
    }
    let shape = SeqShape::new(40, 200)?;
    let mut x = vec![0f32; shape.rows() * i];
    let mut labels = vec![None; shape.rows()];
    for b in 0..shape.batch {
        let y = rng.random_range(0..c);
        labels[b] = Some(y);
        x[b * i + y] = 1.0;
    }
    for row in x.chunks_exact_mut(i) {
        for v in &mut row[c..] {
            *v = rng.random_range(-sigma..sigma) * 3f32.sqrt();
        }
    }
    let mut constant = vec![0f32; i];
    constant[0] = 0.0;
    let cfg = DiagnoseConfig {
        lyapunov: Some(LyapunovConfig {
            transient: 10,
            exponents: 2,
            ..Default::default()
        }),
        attractors: Some(AttractorConfig {
            runs: 32,
            transient: 300,
            ..Default::default()
        }),
        memory: Some(MemoryConfig {
            max_delay: 39,
            ..Default::default()
        }),
        ..Default::default()
    };
    let be = CpuBackend::new();
    for w in [0.95f32, 0.6] {
        let mut w_hh = vec![0f32; h * h];
        (0..h).for_each(|j| w_hh[j * h + j] = w);
        let model = tanh_rnn(&w_ih, &w_hh, i, h)?;
        let inputs = DiagnoseInputs {
            x: x.clone(),
            shape,
            s0: None,
            labels: Some(labels.clone()),
            classes: c,
            constant_input: Some(constant.clone()),
        };
        let rep = diagnose(&be, &model, &inputs, &cfg)?;
        let out = dir.join(format!("w{w}"));
        let files = rep.write_all(&out)?;
        println!(
            "w = {w}: L̂ = {:.4}, λ = {:?}, attractors = {}, memory capacity = {:.2} steps; wrote {} files to {}",
            rep.lipschitz.as_ref().map_or(f64::NAN, |l| l.lipschitz),
            rep.lyapunov.as_ref().map(|l| l.exponents.clone()).unwrap_or_default(),
            rep.attractors.as_ref().map_or(0, |a| a.attractors.len()),
            rep.memory.as_ref().map_or(f64::NAN, |m| m.capacity),
            files.len(),
            out.display()
        );
    }
    Ok(())
}
