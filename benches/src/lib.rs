//! Shared pieces of memrnn's benchmarks: the named shapes of TARGETS.md, the FLOP counts
//! that make figures comparable with cuDNN's samples, and a median timer.

use memrnn_core::{real::convert, Backend, CellDims, CellKind, SeqShape, SeqUpstream};
use memrnn_testkit::{random_params, rng, uniform};
use serde::Serialize;
use std::time::Instant;

/// A named benchmark shape.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BenchShape {
    pub name: &'static str,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
    pub steps: usize,
}

/// TARGETS.md's shapes.
pub const SHAPES: [BenchShape; 4] = [
    BenchShape {
        name: "paper",
        batch: 128,
        input: 785,
        hidden: 200,
        steps: 20,
    },
    BenchShape {
        name: "small-batch",
        batch: 8,
        input: 64,
        hidden: 256,
        steps: 500,
    },
    BenchShape {
        name: "long",
        batch: 1024,
        input: 785,
        hidden: 200,
        steps: 1000,
    },
    BenchShape {
        name: "wide",
        batch: 64,
        input: 256,
        hidden: 1024,
        steps: 100,
    },
];

/// A tiny shape that only checks that a benchmark runs (B 3, I 5, H 7, T 4).
pub const TINY: BenchShape = BenchShape {
    name: "tiny",
    batch: 3,
    input: 5,
    hidden: 7,
    steps: 4,
};

/// A TARGETS.md shape by name, or [`TINY`].
pub fn shape(name: &str) -> Option<BenchShape> {
    SHAPES
        .iter()
        .copied()
        .chain([TINY])
        .find(|s| s.name == name)
}

/// Forward FLOPs: `2·B·G·H·(I + H)` per step, times `T`.
pub fn forward_flops(kind: CellKind, s: &BenchShape) -> f64 {
    let g = kind.gates() as f64;
    2.0 * s.batch as f64 * g * s.hidden as f64 * (s.input + s.hidden) as f64 * s.steps as f64
}

/// A training step without input gradient: forward + `2·B·G·H·I` + `4·B·G·H·H`, times `T`.
pub fn train_flops(kind: CellKind, s: &BenchShape) -> f64 {
    let g = kind.gates() as f64;
    let (b, h, i, t) = (
        s.batch as f64,
        s.hidden as f64,
        s.input as f64,
        s.steps as f64,
    );
    forward_flops(kind, s) + (2.0 * b * g * h * i + 4.0 * b * g * h * h) * t
}

/// Random inputs for one benchmark call (fresh per seed; no zeros).
pub struct BenchData {
    pub cell: CellDims,
    pub shape: SeqShape,
    pub params: Vec<f32>,
    pub x: Vec<f32>,
    pub dh_seq: Vec<f32>,
}

impl BenchData {
    pub fn new(kind: CellKind, s: &BenchShape, seed: u64) -> Self {
        let cell = CellDims::new(kind, s.input, s.hidden).expect("valid bench dims");
        let shape = SeqShape::new(s.steps, s.batch).expect("valid bench shape");
        let mut r = rng(seed);
        let params: Vec<f64> = random_params(&mut r, &cell, 1.0);
        let x: Vec<f64> = uniform(&mut r, shape.rows() * s.input, 0.0, 1.0);
        let dh: Vec<f64> = uniform(&mut r, shape.rows() * s.hidden, -1e-3, 1e-3);
        BenchData {
            cell,
            shape,
            params: convert(&params),
            x: convert(&x),
            dh_seq: convert(&dh),
        }
    }
}

/// [`BenchData`] uploaded to a backend once, so that timings exclude host transfers.
pub struct DeviceData<B: Backend> {
    pub cell: CellDims,
    pub shape: SeqShape,
    pub params: B::Tensor,
    pub x: B::Tensor,
    pub dh_seq: B::Tensor,
}

impl<B: Backend> DeviceData<B> {
    pub fn upload(be: &B, d: &BenchData) -> memrnn_core::Result<Self> {
        Ok(DeviceData {
            cell: d.cell,
            shape: d.shape,
            params: be.upload(&d.params)?,
            x: be.upload(&d.x)?,
            dh_seq: be.upload(&d.dh_seq)?,
        })
    }
}

/// A forward pass on any backend (call the backend's synchronisation after it to time).
pub fn device_forward<B: Backend>(be: &B, d: &DeviceData<B>) {
    let f = be
        .seq_forward(&d.cell, &d.params, d.shape, &d.x, None)
        .expect("bench forward");
    std::hint::black_box(&f.h_seq);
}

/// A training step's recurrent part on any backend.
pub fn device_train<B: Backend>(be: &B, d: &DeviceData<B>) {
    let f = be
        .seq_forward(&d.cell, &d.params, d.shape, &d.x, None)
        .expect("bench forward");
    let up = SeqUpstream {
        dh_seq: Some(&d.dh_seq),
        ds_final: None,
    };
    let g = be
        .seq_backward(&d.cell, &d.params, d.shape, &d.x, &f, up, false)
        .expect("bench backward");
    std::hint::black_box(&g.dparams);
}

/// Parses `--name value` from the command line.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// Median wall time of `reps` runs of `f` after `warmup` runs, in seconds.
pub fn median_secs(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

/// `C = A·B` for square `n` with the gemm crate on all threads: the SGEMM ceiling.
pub fn sgemm_square(n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    let threads = rayon::current_num_threads();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: a, b, c each hold n·n floats (asserted), row-major with the strides passed.
    assert!(a.len() >= n * n && b.len() >= n * n && c.len() >= n * n);
    unsafe {
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            n as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    }
}

/// The criterion body shared by `benches/{rnn,gru,lstm}.rs`: forward and training step of
/// `kind` at the paper and small-batch shapes on the CPU backend, with `W_hh` stored in
/// f32, bf16 and f16 (groups `cpu/{cell}/{shape}/{precision}`; filter with criterion's
/// usual name argument), throughput in FLOP/s by TARGETS.md's counting (criterion shows
/// it as elements/s: 1 element = 1 FLOP).
pub fn criterion_cpu_cell(c: &mut criterion::Criterion, kind: CellKind) {
    for (name, precision) in ["paper", "small-batch"]
        .into_iter()
        .flat_map(|n| memrnn_core::Precision::ALL.map(|p| (n, p)))
    {
        let be = memrnn_cpu::CpuBackend::new().with_precision(precision);
        let sh = shape(name).expect("known shape");
        let dev = DeviceData::upload(&be, &BenchData::new(kind, &sh, 7)).expect("host upload");
        let mut g = c.benchmark_group(format!("cpu/{}/{name}/{precision}", kind.name()));
        g.sample_size(10);
        g.throughput(criterion::Throughput::Elements(
            forward_flops(kind, &sh) as u64
        ));
        g.bench_function("forward", |b| b.iter(|| device_forward(&be, &dev)));
        g.throughput(criterion::Throughput::Elements(
            train_flops(kind, &sh) as u64
        ));
        g.bench_function("train_step", |b| b.iter(|| device_train(&be, &dev)));
        g.finish();
    }
}

/// `--simd portable|avx2+fma|avx512vl`: the CPU fast path's SIMD level (the detected best
/// when absent); exits with a message naming the available levels when it is unknown or
/// not on this CPU.
pub fn simd_arg(args: &[String]) -> Option<memrnn_cpu::SimdLevel> {
    let name: String = arg(args, "--simd")?;
    let available = memrnn_cpu::SimdLevel::available();
    let names: Vec<&str> = available.iter().map(|l| l.name()).collect();
    match memrnn_cpu::SimdLevel::from_name(&name) {
        Some(level) if level.is_available() => Some(level),
        _ => {
            eprintln!("--simd {name}: not a SIMD level of this CPU (available: {names:?})");
            std::process::exit(2)
        }
    }
}
