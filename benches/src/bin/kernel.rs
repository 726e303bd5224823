//! One kernel family on one backend: first validate it against the f64 reference
//! (`memrnn_cpu::reference`, or `adam_update_host` for Adam), then time it. Refuses to
//! time what does not validate (exit 1). llm.c's habit: a speed figure always comes with
//! the check that the thing timed computes the right numbers.
//!
//! ```text
//! cargo run --release -p memrnn-benches --bin kernel -- FAMILY [--backend cpu|cuda|cuda-sim]
//!     [--shape tiny|paper|small-batch|long|wide] [--reps N] [--threads N] [--simd LEVEL]
//!     [--points N] [--cell gru] [--precision f32|bf16|f16] [--fwd-split auto|batch|units]
//!     [--panels auto|storage|f32]
//! ```
//!
//! Families: `rnn`, `gru`, `lstm` (sequence forward, then forward + backward: a training
//! step's recurrent part), `speed` (the slow-point speed and its gradients at `--points`
//! states, `--cell`), `adam` (one Adam update of the shape's parameter count). `--shape
//! tiny` (B 3, I 5, H 7, T 4) checks that everything runs; the named shapes are
//! TARGETS.md's. Validation runs the reference on the full shape when it is small
//! (B·T ≤ 4096) and on the first 16 batch rows and 50 steps otherwise (same I and H), and
//! says which. `cuda-sim` needs `--features sim` and tiny shapes (the simulated device runs
//! every CUDA thread on one CPU thread). Output: a line per check, then one JSON line per
//! timed pass (median of `--reps` after one warm-up, each run ended by a device sync).
//! `--precision` stores `W_hh` in bf16 or f16 (CPU backend; f32 arithmetic): validation
//! then runs the reference on the weights rounded to that format (what the backend
//! computes with, `Precision::round_recurrent`), at the same tolerance, and every JSON
//! line names the precision.

use memrnn_benches::{arg, median_secs, shape, BenchShape};
use memrnn_core::{
    adam_update_host, real::convert, AdamConfig, Backend, CellDims, CellKind, Precision, SeqShape,
    SeqUpstream,
};
use memrnn_cpu::{reference, CpuBackend, FwdSplit, PanelFormat};
use memrnn_testkit::{random_params, rel_err_norm, rng, uniform};

/// Relative error in norm allowed between an f32 backend and the f64 reference (the
/// tolerance of the conformance suite).
const TOL: f64 = 1e-4;

fn fail(msg: String) -> ! {
    eprintln!("kernel: {msg}");
    std::process::exit(1);
}

fn check(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let err = rel_err_norm(got, want);
    let ok = err < tol;
    println!(
        "validate {what}: relative error in norm {err:.2e} (< {tol:.0e}) {}",
        if ok { "ok" } else { "FAILED" }
    );
    if !ok {
        fail(format!(
            "{what} does not match the reference: not timing it"
        ));
    }
}

struct Run<'a, B: Backend> {
    be: &'a B,
    sync: &'a dyn Fn(),
    reps: usize,
    shape: BenchShape,
}

impl<B: Backend> Run<'_, B> {
    fn up(&self, v: &[f32]) -> B::Tensor {
        self.be
            .upload(v)
            .unwrap_or_else(|e| fail(format!("upload: {e}")))
    }
    /// `params` (f32 values) with `W_hh` rounded to the backend's storage precision:
    /// the weights the backend computes with, for the reference.
    fn storable(&self, cell: &CellDims, params: Vec<f64>) -> Vec<f64> {
        let p32: Vec<f32> = convert(&params);
        let r = self
            .be
            .precision()
            .round_recurrent(cell, &p32)
            .unwrap_or_else(|e| fail(e.to_string()));
        r.iter().map(|&v| v as f64).collect()
    }
    fn down(&self, t: &B::Tensor) -> Vec<f32> {
        self.be
            .download(t)
            .unwrap_or_else(|e| fail(format!("download: {e}")))
    }
    fn time(&self, family: &str, pass: &str, mut f: impl FnMut()) {
        let secs = median_secs(1, self.reps, || {
            f();
            (self.sync)();
        });
        println!(
            "{{\"impl\":\"memrnn\",\"backend\":\"{}\",\"family\":\"{family}\",\"shape\":\"{}\",\"precision\":\"{}\",\"pass\":\"{pass}\",\"ms\":{:.4}}}",
            self.be.name(),
            self.shape.name,
            self.be.precision(),
            secs * 1e3
        );
    }

    fn recurrence(&self, kind: CellKind) {
        let s = self.shape;
        let cell = CellDims::new(kind, s.input, s.hidden).unwrap_or_else(|e| fail(e.to_string()));
        let full = SeqShape::new(s.steps, s.batch).unwrap_or_else(|e| fail(e.to_string()));
        let small = s.batch * s.steps <= 4096;
        let vshape = if small {
            full
        } else {
            SeqShape::new(s.steps.min(50), s.batch.min(16)).unwrap_or_else(|e| fail(e.to_string()))
        };
        println!(
            "{kind} on {}: validating at B {} T {} ({}), then timing at B {} T {}",
            self.be.name(),
            vshape.batch,
            vshape.steps,
            if small {
                "the full shape"
            } else {
                "a reduced batch and length"
            },
            full.batch,
            full.steps
        );
        let mut r = rng(0x6E7C);
        let params = self.storable(&cell, random_params(&mut r, &cell, 1.0));
        let x: Vec<f64> = uniform(&mut r, vshape.rows() * s.input, 0.0, 1.0);
        let dh: Vec<f64> = uniform(&mut r, vshape.rows() * s.hidden, -1.0, 1.0);
        let want_f = reference::seq_forward(&cell, &params, vshape, &x, None)
            .unwrap_or_else(|e| fail(e.to_string()));
        let want_g = reference::seq_backward(
            &cell,
            &params,
            vshape,
            &x,
            &want_f,
            SeqUpstream {
                dh_seq: Some(&dh),
                ds_final: None,
            },
            true,
        )
        .unwrap_or_else(|e| fail(e.to_string()));
        let (p, xd, dhd) = (
            self.up(&convert::<f64, f32>(&params)),
            self.up(&convert::<f64, f32>(&x)),
            self.up(&convert::<f64, f32>(&dh)),
        );
        let be = self.be;
        let f = be
            .seq_forward(&cell, &p, vshape, &xd, None)
            .unwrap_or_else(|e| fail(e.to_string()));
        check("h_seq", &self.down(&f.h_seq), &want_f.h_seq, TOL);
        let up = SeqUpstream {
            dh_seq: Some(&dhd),
            ds_final: None,
        };
        let g = be
            .seq_backward(&cell, &p, vshape, &xd, &f, up, true)
            .unwrap_or_else(|e| fail(e.to_string()));
        check("dparams", &self.down(&g.dparams), &want_g.dparams, TOL);
        check("ds0", &self.down(&g.ds0), &want_g.ds0, TOL);
        if let (Some(dx), Some(want)) = (&g.dx, &want_g.dx) {
            check("dx", &self.down(dx), want, TOL);
        }
        // Timing on the full shape, fresh inputs uploaded once.
        let x: Vec<f32> = uniform(&mut r, full.rows() * s.input, 0.0, 1.0);
        let dh: Vec<f32> = uniform(&mut r, full.rows() * s.hidden, -1e-3, 1e-3);
        let (xd, dhd) = (self.up(&x), self.up(&dh));
        let name = kind.name();
        self.time(name, "fwd", || {
            let f = be.seq_forward(&cell, &p, full, &xd, None).expect("forward");
            std::hint::black_box(&f.h_seq);
        });
        self.time(name, "train", || {
            let f = be.seq_forward(&cell, &p, full, &xd, None).expect("forward");
            let up = SeqUpstream {
                dh_seq: Some(&dhd),
                ds_final: None,
            };
            let g = be
                .seq_backward(&cell, &p, full, &xd, &f, up, false)
                .expect("backward");
            std::hint::black_box(&g.dparams);
        });
    }

    fn speed(&self, kind: CellKind, points: usize) {
        let s = self.shape;
        let cell = CellDims::new(kind, s.input, s.hidden).unwrap_or_else(|e| fail(e.to_string()));
        println!(
            "speed ({kind}, I {}, H {}) on {}: validating and timing at {points} points",
            s.input,
            s.hidden,
            self.be.name()
        );
        let mut r = rng(0x5BEED);
        let params = self.storable(&cell, random_params(&mut r, &cell, 1.0));
        let states: Vec<f64> = uniform(&mut r, points * cell.state_size(), -0.9, 0.9);
        let x: Vec<f64> = uniform(&mut r, points * s.input, 0.0, 1.0);
        let want = reference::step_speed_grad(&cell, &params, &states, &x, points, true)
            .unwrap_or_else(|e| fail(e.to_string()));
        let (p, st, xd) = (
            self.up(&convert::<f64, f32>(&params)),
            self.up(&convert::<f64, f32>(&states)),
            self.up(&convert::<f64, f32>(&x)),
        );
        let be = self.be;
        let g = be
            .step_speed_grad(&cell, &p, &st, &xd, points, true)
            .unwrap_or_else(|e| fail(e.to_string()));
        check("speed", &self.down(&g.speed), &want.speed, TOL);
        check("dstate", &self.down(&g.dstate), &want.dstate, TOL);
        if let (Some(d), Some(w)) = (&g.dparams, &want.dparams) {
            check("dparams", &self.down(d), w, TOL);
        }
        self.time("speed", "step_speed_grad", || {
            let g = be
                .step_speed_grad(&cell, &p, &st, &xd, points, false)
                .expect("speed");
            std::hint::black_box(&g.dstate);
        });
    }

    fn adam(&self) {
        let s = self.shape;
        let n = CellDims::new(CellKind::Lstm, s.input, s.hidden)
            .unwrap_or_else(|e| fail(e.to_string()))
            .layout()
            .len();
        println!(
            "adam on {}: {n} parameters (an LSTM's at this shape)",
            self.be.name()
        );
        let mut r = rng(0xADA);
        let p0: Vec<f32> = uniform(&mut r, n, -1.0, 1.0);
        let g: Vec<f32> = uniform(&mut r, n, -1.0, 1.0);
        let cfg = AdamConfig::default();
        let be = self.be;
        let (mut p, gd) = (self.up(&p0), self.up(&g));
        let mut st = be.adam_state(n).unwrap_or_else(|e| fail(e.to_string()));
        be.adam_update(&mut p, &gd, &mut st, &cfg)
            .unwrap_or_else(|e| fail(e.to_string()));
        let (mut want, mut m, mut v) = (p0.clone(), vec![0.0f32; n], vec![0.0f32; n]);
        adam_update_host(&mut want, &g, &mut m, &mut v, 0, &cfg);
        let want: Vec<f64> = convert(&want);
        check("params after one step", &self.down(&p), &want, 1e-6);
        self.time("adam", "update", || {
            be.adam_update(&mut p, &gd, &mut st, &cfg).expect("adam");
        });
    }
}

fn run_family<B: Backend>(be: &B, sync: &dyn Fn(), family: &str, args: &[String], s: BenchShape) {
    let run = Run {
        be,
        sync,
        reps: arg(args, "--reps").unwrap_or(5),
        shape: s,
    };
    match family {
        "rnn" | "gru" | "lstm" => {
            run.recurrence(family.parse().unwrap_or_else(|e| fail(format!("{e}"))))
        }
        "speed" => {
            let cell: String = arg(args, "--cell").unwrap_or_else(|| "gru".into());
            let kind: CellKind = cell
                .parse()
                .unwrap_or_else(|e| fail(format!("--cell: {e}")));
            let points = arg(args, "--points").unwrap_or(if s.name == "tiny" { 5 } else { 4096 });
            run.speed(kind, points)
        }
        "adam" => run.adam(),
        other => fail(format!(
            "unknown family {other:?}: give rnn, gru, lstm, speed or adam"
        )),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(family) = args.get(1).filter(|a| !a.starts_with("--")).cloned() else {
        fail("usage: kernel FAMILY [--backend cpu|cuda|cuda-sim] [--shape NAME] [--reps N] (FAMILY: rnn, gru, lstm, speed, adam)".into());
    };
    let shape_name: String = arg(&args, "--shape").unwrap_or_else(|| "tiny".into());
    let s = shape(&shape_name).unwrap_or_else(|| {
        fail(format!(
            "unknown shape {shape_name:?}: give tiny, paper, small-batch, long or wide"
        ))
    });
    let backend: String = arg(&args, "--backend").unwrap_or_else(|| "cpu".into());
    let precision = match args.iter().position(|a| a == "--precision") {
        None => Precision::F32,
        Some(i) => args
            .get(i + 1)
            .ok_or_else(|| "--precision needs a value: f32, bf16 or f16".to_string())
            .and_then(|v| v.parse::<Precision>().map_err(|e| e.to_string()))
            .unwrap_or_else(|e| fail(e)),
    };
    match backend.as_str() {
        "cpu" => {
            let mut be = CpuBackend::new().with_precision(precision);
            if let Some(level) = memrnn_benches::simd_arg(&args) {
                be = be.with_simd(level).unwrap_or_else(|e| panic!("{e}"));
            }
            if let Some(t) = arg::<usize>(&args, "--threads") {
                be = be.with_threads(t).unwrap_or_else(|e| fail(e.to_string()));
            }
            if let Some(split) = arg::<String>(&args, "--fwd-split") {
                be = be.with_forward_split(match split.as_str() {
                    "auto" => FwdSplit::Auto,
                    "batch" => FwdSplit::Batch,
                    "units" => FwdSplit::Units,
                    other => fail(format!("--fwd-split {other:?}: give auto, batch or units")),
                });
            }
            if let Some(format) = arg::<String>(&args, "--panels") {
                be = be.with_panel_format(match format.as_str() {
                    "auto" => PanelFormat::Auto,
                    "storage" => PanelFormat::Storage,
                    "f32" => PanelFormat::F32,
                    other => fail(format!("--panels {other:?}: give auto, storage or f32")),
                });
            }
            run_family(&be, &|| {}, &family, &args, s)
        }
        "cuda" => {
            let be = memrnn_cuda::CudaBackend::new(0)
                .unwrap_or_else(|e| fail(format!("no usable GPU: {e}")))
                .with_precision(precision);
            let sync = || be.synchronize().expect("synchronize");
            run_family(&be, &sync, &family, &args, s)
        }
        #[cfg(feature = "sim")]
        "cuda-sim" => {
            let be = memrnn_cuda::CudaBackend::simulated(memrnn_cuda::SimProps::small())
                .unwrap_or_else(|e| fail(e.to_string()))
                .with_precision(precision);
            let sync = || be.synchronize().expect("synchronize");
            run_family(&be, &sync, &family, &args, s)
        }
        other => fail(format!(
            "unknown backend {other:?}: give cpu or cuda (cuda-sim with --features sim)"
        )),
    }
}
