//! Launchers for `kernels/task.cu`: the task's batches and the speed penalty's
//! delay-period inputs, drawn on the device from the Philox key of `(seed, step)`.

use crate::device::{backend_err, Device, LaunchDims, View};
use crate::kernels::{self, DevPtr, TaskParams};
use memrnn_core::Result;

/// Threads per row.
const THREADS: u32 = 128;

/// What a task kernel writes and reads, and its sizes. `targets`, `weights`, `images`
/// and `offsets` are `None` for the delay inputs.
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
}

fn i32_of(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| backend_err(format!("{what} = {v} exceeds a 32-bit size")))
}

/// `task_batch_f32` (with the digit table) or `task_delay_f32` (without).
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
    let batch = a.images.is_some();
    if batch {
        for (what, v, want) in [
            ("targets", a.targets, rows),
            ("weights", a.weights, rows),
            ("images", a.images, a.n_images * a.p),
            ("offsets", a.offsets, 11),
        ] {
            need(what, v.map_or(0, |v| v.len()), want)?;
        }
    }
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
    };
    let blocks = rows.clamp(1, dev.info().sms as usize * 32) as u32;
    let dims = LaunchDims::linear(blocks, THREADS, 0);
    // Rows r < T·B of x, targets and weights; images rows offsets[d] + k with k below
    // digit d's count (offsets built from the host-checked counts by DigitTable::new).
    if batch {
        dev.launch(&kernels::TASK_BATCH, dims, params)
    } else {
        dev.launch(&kernels::TASK_DELAY, dims, params)
    }
}
