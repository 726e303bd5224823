//! The real device: the NVIDIA driver and cuBLAS through cudarc, one context, the legacy
//! default stream, and the embedded PTX loaded once per backend.

use super::{backend_err, ColMajorGemm, DeviceInfo, Elem, LaunchDims};
use crate::kernels::{self, DevPtr, Kernel, KernelParams, Module};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DriverError,
    LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use memrnn_core::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(crate) fn drv(what: &str) -> impl FnOnce(DriverError) -> Error + '_ {
    move |e| backend_err(format!("{what}: {e:?}"))
}

/// Fails with a clear message (instead of cudarc's panic) unless the driver and cuBLAS
/// libraries can be loaded.
fn probe_libraries() -> Result<()> {
    // SAFETY: only tries dlopen on the candidate names and closes what it opened; no
    // symbol is called.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    if !driver {
        return Err(backend_err(
            "no CUDA driver found (libcuda.so could not be loaded): this machine has no NVIDIA \
             GPU or driver; use the CPU backend (or the simulated device, --backend cuda-sim, \
             to run the CUDA kernels' code on the CPU)",
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

/// One GPU: its context, stream, cuBLAS handle and every kernel, loaded.
pub(crate) struct RealDevice {
    pub info: DeviceInfo,
    pub name: String,
    stream: Arc<CudaStream>,
    blas: Mutex<CudaBlas>,
    funcs: HashMap<&'static str, CudaFunction>,
    _ctx: Arc<CudaContext>,
}

fn load_module(ctx: &Arc<CudaContext>, m: Module) -> Result<Arc<CudaModule>> {
    let (name, src) = m.ptx();
    ctx.load_module(Ptx::from_src(src)).map_err(|e| {
        backend_err(format!(
            "the driver rejected the embedded PTX {name} ({e:?}); it was built for sm_90 with \
             nvcc 13.0 (see crates/memrnn-cuda/ptx/MANIFEST): this needs a Hopper-class GPU \
             (compute capability >= 9.0) and a driver for CUDA 13.0 or newer (R580+)"
        ))
    })
}

impl RealDevice {
    /// Device `ordinal`, or a clear error when there is no driver, no such device, no
    /// cuBLAS, or the driver rejects the embedded PTX.
    pub(crate) fn open(ordinal: usize) -> Result<RealDevice> {
        probe_libraries()?;
        let ctx = CudaContext::new(ordinal).map_err(|e| {
            backend_err(format!(
                "cannot open CUDA device {ordinal} ({e:?}): no usable NVIDIA GPU at that ordinal"
            ))
        })?;
        // SAFETY: every operation of this backend runs on the one (legacy default) stream
        // below, which orders them; cudarc's per-buffer events add nothing but cost.
        unsafe { ctx.disable_event_tracking() };
        let attr = |a| ctx.attribute(a).map_err(drv("reading a device attribute"));
        let info = DeviceInfo {
            sms: attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as u32,
            max_smem_optin: attr(
                CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )?
            .max(0) as u32,
            cooperative: attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH)? != 0,
        };
        let (major, minor) = ctx
            .compute_capability()
            .map_err(drv("reading the compute capability"))?;
        let gpu = ctx.name().map_err(drv("reading the device name"))?;
        if major < 9 {
            return Err(backend_err(format!(
                "{gpu} has compute capability {major}.{minor}; memrnn's PTX targets sm_90 \
                 (Hopper) and newer"
            )));
        }
        let max_smem = i32::try_from(info.max_smem_optin).unwrap_or(i32::MAX);
        let mut modules = HashMap::new();
        for m in Module::ALL {
            modules.insert(m, load_module(&ctx, m)?);
        }
        let mut funcs = HashMap::new();
        for k in kernels::ALL {
            let f = modules[&k.module].load_function(k.name).map_err(|e| {
                backend_err(format!("kernel {} missing from its module: {e:?}", k.name))
            })?;
            if k.big_smem {
                // Let the kernel use the device's whole opt-in shared memory.
                f.set_attribute(
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    max_smem,
                )
                .map_err(drv("raising the dynamic shared-memory limit"))?;
            }
            funcs.insert(k.name, f);
        }
        // The legacy default stream: every backend on this device is serialised with every
        // other, so tensors may be shared between backends without events.
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| backend_err(format!("creating a cuBLAS handle: {e:?}")))?;
        Ok(RealDevice {
            info,
            name: format!("cuda ({gpu}, sm_{major}{minor}, {} SMs)", info.sms),
            stream,
            blas: Mutex::new(blas),
            funcs,
            _ctx: ctx,
        })
    }

    fn func(&self, name: &str) -> Result<&CudaFunction> {
        self.funcs
            .get(name)
            .ok_or_else(|| backend_err(format!("internal: kernel {name} was not loaded")))
    }

    pub(crate) fn alloc<T: Elem>(&self, len: usize) -> Result<CudaSlice<T>> {
        // SAFETY: T (f32, u32, i32, u64, the kernels' argument structs) has no invalid bit
        // patterns, and every caller writes
        // every element it later reads (or poisons the buffer first).
        unsafe { self.stream.alloc::<T>(len) }.map_err(drv("allocating device memory"))
    }

    pub(crate) fn zeros<T: Elem>(&self, len: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(len)
            .map_err(drv("allocating device memory"))
    }

    pub(crate) fn htod<T: Elem>(&self, host: &[T]) -> Result<CudaSlice<T>> {
        self.stream
            .clone_htod(host)
            .map_err(drv("copying to the device"))
    }

    pub(crate) fn dtoh<T: Elem>(&self, s: &CudaSlice<T>, off: usize, len: usize) -> Result<Vec<T>> {
        self.stream
            .clone_dtoh(&s.slice(off..off + len))
            .map_err(drv("copying to the host"))
    }

    pub(crate) fn base<T: Elem>(&self, s: &CudaSlice<T>) -> u64 {
        // Event tracking is off (see `open`): the guard records nothing.
        let (p, _guard) = s.device_ptr(&self.stream);
        p
    }

    pub(crate) fn copy(&self, src: DevPtr, dst: DevPtr, bytes: usize) -> Result<()> {
        // SAFETY: both ranges were derived from views of live buffers of this context
        // whose lengths cover `bytes` (Device::copy checked equal lengths); the copy is
        // ordered on the stream with every kernel that reads or writes them.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(dst.0, src.0, bytes, self.stream.cu_stream())
        }
        .map_err(drv("device copy"))
    }

    pub(crate) fn launch<P: KernelParams>(
        &self,
        k: &Kernel<P>,
        d: LaunchDims,
        params: P,
    ) -> Result<()> {
        let f = self.func(k.name)?;
        let cfg = LaunchConfig {
            grid_dim: d.grid,
            block_dim: d.block,
            shared_mem_bytes: d.smem,
        };
        let mut b = self.stream.launch_builder(f);
        b.arg(&params);
        // SAFETY: `params` is the kernel's own parameter struct (KernelParams: layout
        // checked against params.cuh), built by a launcher in ops/ from views whose
        // extents it checked against what the kernel indexes for these sizes; a
        // cooperative launch comes from a plan that passed the occupancy check, so every
        // block is co-resident as grid.sync() requires.
        let r = unsafe {
            if d.cooperative {
                b.launch_cooperative(cfg)
            } else {
                b.launch(cfg)
            }
        };
        r.map(|_| ()).map_err(drv(k.name))
    }

    pub(crate) fn occupancy(&self, name: &str, threads: u32, smem: usize) -> Result<usize> {
        let f = self.func(name)?;
        let n = f
            .occupancy_max_active_blocks_per_multiprocessor(threads, smem, None)
            .map_err(drv("occupancy query"))?;
        Ok(n as usize)
    }

    pub(crate) fn sgemm(&self, g: &ColMajorGemm, a: DevPtr, b: DevPtr, c: DevPtr) -> Result<()> {
        let blas = self
            .blas
            .lock()
            .map_err(|_| backend_err("cuBLAS handle poisoned by an earlier panic"))?;
        // SAFETY: blas.rs checked every operand's extent at its leading dimension against
        // the views these pointers come from; all are buffers of this context, and the
        // handle's stream is the backend's stream, which orders the product with the
        // kernels that produce and consume its operands. alpha/beta live across the call.
        unsafe {
            cudarc::cublas::result::sgemm(
                *blas.handle(),
                cublas_op(g.trans_a),
                cublas_op(g.trans_b),
                g.m,
                g.n,
                g.k,
                &g.alpha,
                a.0 as *const f32,
                g.lda,
                b.0 as *const f32,
                g.ldb,
                &g.beta,
                c.0 as *mut f32,
                g.ldc,
            )
        }
        .map_err(|e| backend_err(format!("cublasSgemm: {e:?}")))
    }

    /// `cublasSgemmBatched`: `count` products of one shape, operands from the device
    /// arrays of pointers `a`, `b` and `c`.
    pub(crate) fn sgemm_batched(
        &self,
        g: &ColMajorGemm,
        a: DevPtr,
        b: DevPtr,
        c: DevPtr,
        count: i32,
    ) -> Result<()> {
        let blas = self
            .blas
            .lock()
            .map_err(|_| backend_err("cuBLAS handle poisoned by an earlier panic"))?;
        // SAFETY: `a`, `b` and `c` are device arrays of `count` pointers, uploaded on this
        // stream before the call, each pointing into a buffer of this context whose extent
        // at its leading dimension blas.rs checked; the C operands do not overlap (each
        // member's own buffer). The handle's stream is the backend's stream; alpha/beta
        // live across the call.
        unsafe {
            cudarc::cublas::sys::cublasSgemmBatched(
                *blas.handle(),
                cublas_op(g.trans_a),
                cublas_op(g.trans_b),
                g.m,
                g.n,
                g.k,
                &g.alpha,
                a.0 as *const *const f32,
                g.lda,
                b.0 as *const *const f32,
                g.ldb,
                &g.beta,
                c.0 as *const *mut f32,
                g.ldc,
                count,
            )
        }
        .result()
        .map_err(|e| backend_err(format!("cublasSgemmBatched: {e:?}")))
    }

    pub(crate) fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(drv("synchronize"))
    }
}

/// cuBLAS's transpose flag for `t`.
fn cublas_op(t: bool) -> cublasOperation_t {
    if t {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}
