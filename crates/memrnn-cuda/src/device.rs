//! The driver, the context and the module cache: each PTX is loaded once per context.

use crate::ptx;
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, DriverError};
use cudarc::nvrtc::Ptx;
use memrnn_core::{Error, Result};
use std::sync::{Arc, Mutex};

pub(crate) fn backend_err(reason: impl Into<String>) -> Error {
    Error::Backend {
        backend: "cuda".to_string(),
        reason: reason.into(),
    }
}

pub(crate) fn drv(what: &str) -> impl FnOnce(DriverError) -> Error + '_ {
    move |e| backend_err(format!("{what}: {e:?}"))
}

/// Fails with a clear message (instead of cudarc's panic) unless the driver and cuBLAS
/// libraries can be loaded.
pub(crate) fn probe_libraries() -> Result<()> {
    // SAFETY: only tries dlopen on the candidate names and closes what it opened; no
    // symbol is called.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    if !driver {
        return Err(backend_err(
            "no CUDA driver found (libcuda.so could not be loaded): this machine has no NVIDIA \
             GPU or driver; use the CPU backend",
        ));
    }
    // SAFETY: as above, for libcublas.
    let blas = unsafe { cudarc::cublas::sys::is_culib_present() };
    if !blas {
        return Err(backend_err(
            "the CUDA driver is present but cuBLAS (libcublas.so.13) could not be loaded: \
             install the CUDA 13 runtime libraries (e.g. `pip install nvidia-cublas`) and add \
             their lib directory (…/site-packages/nvidia/cu13/lib) to LD_LIBRARY_PATH",
        ));
    }
    Ok(())
}

/// The four entry points of one cell family (see kernels/common.cuh).
pub(crate) struct CellFns {
    pub seq_fwd: CudaFunction,
    pub step_fwd: CudaFunction,
    pub seq_bwd: CudaFunction,
    pub step_bwd: CudaFunction,
}

/// Every kernel memrnn launches, loaded in one context.
pub(crate) struct Kernels {
    pub rnn: CellFns,
    pub gru: CellFns,
    pub lstm: CellFns,
    pub adam_update: CudaFunction,
    pub col_sum: CudaFunction,
    pub transpose: CudaFunction,
    pub speed: CudaFunction,
    pub axpy_sub: CudaFunction,
    pub repeat_rows: CudaFunction,
    pub one_hot: CudaFunction,
    pub fill: CudaFunction,
}

fn load(ctx: &Arc<CudaContext>, name: &str, src: &str) -> Result<Arc<CudaModule>> {
    ctx.load_module(Ptx::from_src(src)).map_err(|e| {
        backend_err(format!(
            "the driver rejected the embedded PTX {name} ({e:?}); it was built for sm_90 with \
             nvcc 13.0 (see crates/memrnn-cuda/ptx/MANIFEST): this needs a Hopper-class GPU \
             (compute capability >= 9.0) and a driver for CUDA 13.0 or newer (R580+)"
        ))
    })
}

fn func(m: &Arc<CudaModule>, name: &str) -> Result<CudaFunction> {
    m.load_function(name)
        .map_err(|e| backend_err(format!("kernel {name} missing from its module: {e:?}")))
}

fn cell_fns(m: &Arc<CudaModule>, fam: &str, max_smem: i32) -> Result<CellFns> {
    let f = |dir: &str| -> Result<CudaFunction> {
        let k = func(m, &format!("{fam}_{dir}_f32"))?;
        // Let every recurrence kernel use the device's whole opt-in shared memory.
        k.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            max_smem,
        )
        .map_err(drv("raising the dynamic shared-memory limit"))?;
        Ok(k)
    };
    Ok(CellFns {
        seq_fwd: f("seq_fwd")?,
        step_fwd: f("step_fwd")?,
        seq_bwd: f("seq_bwd")?,
        step_bwd: f("step_bwd")?,
    })
}

impl Kernels {
    fn load_all(ctx: &Arc<CudaContext>, max_smem: i32) -> Result<Kernels> {
        let rnn = load(ctx, "rnn.ptx", ptx::RNN)?;
        let gru = load(ctx, "gru.ptx", ptx::GRU)?;
        let lstm = load(ctx, "lstm.ptx", ptx::LSTM)?;
        let adam = load(ctx, "adam.ptx", ptx::ADAM)?;
        Ok(Kernels {
            rnn: cell_fns(&rnn, "rnn", max_smem)?,
            gru: cell_fns(&gru, "gru", max_smem)?,
            lstm: cell_fns(&lstm, "lstm", max_smem)?,
            adam_update: func(&adam, "adam_update_f32")?,
            col_sum: func(&adam, "col_sum_f32")?,
            transpose: func(&adam, "transpose_f32")?,
            speed: func(&adam, "speed_f32")?,
            axpy_sub: func(&adam, "axpy_sub_f32")?,
            repeat_rows: func(&adam, "repeat_rows_f32")?,
            one_hot: func(&adam, "one_hot_f32")?,
            fill: func(&adam, "fill_f32")?,
        })
    }

    /// The kernels of `ctx`, loaded on first use and shared by every backend on it.
    pub(crate) fn for_context(ctx: &Arc<CudaContext>, max_smem: i32) -> Result<Arc<Kernels>> {
        type Cache = Mutex<Vec<(usize, Arc<Kernels>)>>;
        static CACHE: Cache = Mutex::new(Vec::new());
        let key = ctx.cu_ctx() as usize;
        let mut cache = CACHE
            .lock()
            .map_err(|_| backend_err("module cache poisoned by an earlier panic"))?;
        if let Some((_, k)) = cache.iter().find(|(c, _)| *c == key) {
            return Ok(k.clone());
        }
        let k = Arc::new(Kernels::load_all(ctx, max_smem)?);
        cache.push((key, k.clone()));
        Ok(k)
    }
}

/// What the launch planner needs to know about the device.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceInfo {
    pub sms: u32,
    pub max_smem_optin: u32,
    pub cooperative: bool,
}

impl DeviceInfo {
    pub(crate) fn query(ctx: &Arc<CudaContext>) -> Result<DeviceInfo> {
        let a = |attr| {
            ctx.attribute(attr)
                .map_err(drv("reading a device attribute"))
        };
        Ok(DeviceInfo {
            sms: a(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as u32,
            max_smem_optin: a(
                CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )?
            .max(0) as u32,
            cooperative: a(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH)? != 0,
        })
    }
}
