//! Launchers for `kernels/task.cu`: the task's batches, the chunks of long runs and the
//! speed penalty's delay-period inputs, drawn on the device from the Philox key of
//! `(seed, step)`.

use crate::device::{backend_err, Device, LaunchDims, View};
use crate::kernels::{self, DevPtr, TaskParams};
use memrnn_core::Result;

/// Threads per row.
const THREADS: u32 = 128;

/// A long run's chunk (`task_chunk_f32`): its first step, and every trial's read and
/// report time (`u32::MAX`: no trigger).
#[derive(Clone, Copy)]
pub(crate) struct ChunkTimes {
    pub t0: usize,
    pub t_read: u32,
    pub t_report: u32,
}

/// What a task kernel writes and reads, and its sizes. `targets` and `weights` are
/// `Some` for a batch only; `images` and `offsets` `None` for the delay inputs; `chunk`
/// `Some` for a long run's chunk.
pub(crate) struct TaskArgs<'a> {
    pub x: View<'a, f32>,
    pub targets: Option<View<'a, f32>>,
    pub weights: Option<View<'a, f32>>,
    pub images: Option<View<'a, f32>>,
    pub offsets: Option<View<'a, f32>>,
    pub key: [u32; 2],
    /// Steps (1 for the delay inputs), rows, pixels.
    pub t: usize,
    pub b: usize,
    pub p: usize,
    pub vocab: usize,
    pub delta_min: usize,
    pub mean: f32,
    pub std: f32,
    /// Rows of `images` (their count the host checked against the table).
    pub n_images: usize,
    pub chunk: Option<ChunkTimes>,
}

fn i32_of(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| backend_err(format!("{what} = {v} exceeds a 32-bit size")))
}

/// `task_batch_f32` (with the digit table and targets), `task_chunk_f32` (with the digit
/// table and chunk times) or `task_delay_f32` (without either).
pub(crate) fn draw(dev: &Device, a: &TaskArgs<'_>) -> Result<()> {
    let rows = a.t * a.b;
    let need = |what: &str, got: usize, want: usize| {
        if got < want {
            Err(backend_err(format!(
                "task {what} holds {got} elements, the kernel needs {want}"
            )))
        } else {
            Ok(())
        }
    };
    need("x", a.x.len(), rows * (a.p + 1))?;
    let ptr = |v: Option<View<'_, f32>>| v.map_or(Ok(DevPtr(0)), |v| dev.ptr(v));
    let batch = a.targets.is_some();
    let table = a.images.is_some();
    let parts = (batch, a.weights.is_some(), table, a.chunk.is_some());
    if !matches!(
        parts,
        (true, true, true, false) | (false, false, true, true) | (false, false, false, false)
    ) {
        return Err(backend_err(
            "task kernel: a batch needs targets, weights and the digit table, a chunk the \
             digit table and its times, the delay inputs neither",
        ));
    }
    let mut needs = vec![];
    if batch {
        needs.extend([("targets", a.targets, rows), ("weights", a.weights, rows)]);
    }
    if table {
        needs.extend([
            ("images", a.images, a.n_images * a.p),
            ("offsets", a.offsets, 11),
        ]);
    }
    for (what, v, want) in needs {
        need(what, v.map_or(0, |v| v.len()), want)?;
    }
    let times = a.chunk.unwrap_or(ChunkTimes {
        t0: 0,
        t_read: 0,
        t_report: 0,
    });
    let params = TaskParams {
        x: dev.ptr(a.x)?,
        targets: ptr(a.targets)?,
        weights: ptr(a.weights)?,
        images: ptr(a.images)?,
        offsets: ptr(a.offsets)?,
        k0: a.key[0],
        k1: a.key[1],
        t: i32_of(a.t, "steps")?,
        b: i32_of(a.b, "rows")?,
        p: i32_of(a.p, "pixels")?,
        vocab: i32_of(a.vocab, "vocabulary")?,
        delta_min: i32_of(a.delta_min, "delta_min")?,
        mean: a.mean,
        std: a.std,
        t0: i32_of(times.t0, "first step")?,
        t_read: times.t_read,
        t_report: times.t_report,
    };
    let blocks = rows.clamp(1, dev.info().sms as usize * 32) as u32;
    let dims = LaunchDims::linear(blocks, THREADS, 0);
    // Rows r < T·B of x (and of targets and weights for a batch); images rows
    // offsets[d] + k with k below digit d's count (offsets built from the host-checked
    // counts by DigitTable::new); the chunk's steps t0 + t below 2^31 (TaskChunkSpec::check).
    if batch {
        dev.launch(&kernels::TASK_BATCH, dims, params)
    } else if table {
        dev.launch(&kernels::TASK_CHUNK, dims, params)
    } else {
        dev.launch(&kernels::TASK_DELAY, dims, params)
    }
}
