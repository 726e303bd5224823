//! The device seam: everything the CUDA backend's host code does to a device — allocate,
//! copy, launch a kernel with its parameter struct, run a cuBLAS product, query occupancy
//! — goes through [`Device`], which is either the real driver ([`real`], cudarc) or the
//! simulated device ([`sim`], the kernels' own source compiled for the host and run with
//! CUDA's execution semantics). Launch planning, buffer preparation, the argument structs
//! and the slow-point compaction loop are the same code over both.

pub(crate) mod real;
#[cfg(feature = "sim")]
pub(crate) mod sim;
#[cfg(all(test, feature = "sim"))]
mod sim_half_tests;

use crate::kernels::{DevPtr, Kernel, KernelParams};
use memrnn_core::{Error, Result};
use std::ops::Range;

pub(crate) fn backend_err(reason: impl Into<String>) -> Error {
    Error::Backend {
        backend: "cuda".to_string(),
        reason: reason.into(),
    }
}

/// What the launch planner needs to know about the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceInfo {
    pub sms: u32,
    pub max_smem_optin: u32,
    pub cooperative: bool,
}

/// A launch's shape: grid and block dimensions, dynamic shared memory per block, and
/// whether it is cooperative (all blocks co-resident; grid-wide sync allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LaunchDims {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub smem: u32,
    pub cooperative: bool,
}

impl LaunchDims {
    /// A 1-D grid of `blocks` blocks of `threads` threads.
    pub(crate) fn linear(blocks: u32, threads: u32, smem: u32) -> LaunchDims {
        LaunchDims {
            grid: (blocks, 1, 1),
            block: (threads, 1, 1),
            smem,
            cooperative: false,
        }
    }

    pub(crate) fn cooperative(self, on: bool) -> LaunchDims {
        LaunchDims {
            cooperative: on,
            ..self
        }
    }
}

/// Element types that live in device buffers.
pub(crate) trait Elem:
    cudarc::driver::DeviceRepr
    + cudarc::driver::ValidAsZeroBits
    + Copy
    + Default
    + Send
    + Sync
    + 'static
{
}
impl Elem for f32 {}
/// The bits of a bf16 or f16 weight (the half-width copies of `W_hh`).
impl Elem for u16 {}
impl Elem for u32 {}
impl Elem for i32 {}
// Device addresses: tables of per-member pointers (the slow-point search's MrSpMember);
// argument structs: the ensemble recurrence's per-member FwdArgs / BwdArgs arrays.
impl Elem for u64 {}
impl Elem for crate::kernels::FwdArgs {}
impl Elem for crate::kernels::BwdArgs {}

/// A device allocation of `len` elements (≥ 1) on the real or the simulated device.
pub(crate) struct Buf<T: Elem> {
    mem: Mem<T>,
}

enum Mem<T: Elem> {
    Real(cudarc::driver::CudaSlice<T>),
    #[cfg(feature = "sim")]
    Sim(sim::SimMem<T>),
}

impl<T: Elem> Buf<T> {
    pub(crate) fn len(&self) -> usize {
        match &self.mem {
            Mem::Real(s) => s.len(),
            #[cfg(feature = "sim")]
            Mem::Sim(s) => s.len(),
        }
    }

    /// The whole buffer.
    pub(crate) fn all(&self) -> View<'_, T> {
        View {
            buf: self,
            off: 0,
            len: self.len(),
        }
    }

    /// Elements `r` of the buffer. Panics when `r` is not inside the buffer: callers pass
    /// ranges they computed from shapes they already validated (an internal bug, never
    /// user input).
    pub(crate) fn view(&self, r: Range<usize>) -> View<'_, T> {
        self.all().sub(r)
    }
}

/// Elements `[off, off + len)` of a device buffer: what a kernel parameter points at.
/// Like a CUDA pointer it does not distinguish reading from writing; every write goes
/// through the device (a kernel, a copy, a product), never through a Rust reference.
pub(crate) struct View<'a, T: Elem> {
    buf: &'a Buf<T>,
    off: usize,
    len: usize,
}

impl<T: Elem> Clone for View<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Elem> Copy for View<'_, T> {}

impl<'a, T: Elem> View<'a, T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Elements `r` of this view (see [`Buf::view`] for why this may panic).
    pub(crate) fn sub(&self, r: Range<usize>) -> View<'a, T> {
        assert!(
            r.start <= r.end && r.end <= self.len,
            "internal: view {r:?} outside a view of {} elements",
            self.len
        );
        View {
            buf: self.buf,
            off: self.off + r.start,
            len: r.end - r.start,
        }
    }
}

/// One column-major SGEMM exactly as cuBLAS takes it:
/// `C = alpha · op(A) · op(B) + beta · C`, `op(A)` m×k, `op(B)` k×n, `C` m×n.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColMajorGemm {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub alpha: f32,
    pub lda: i32,
    pub ldb: i32,
    pub beta: f32,
    pub ldc: i32,
}

/// The device the backend runs on.
pub(crate) enum Device {
    Real(real::RealDevice),
    #[cfg(feature = "sim")]
    Sim(sim::SimDevice),
}

impl Device {
    pub(crate) fn info(&self) -> DeviceInfo {
        match self {
            Device::Real(d) => d.info,
            #[cfg(feature = "sim")]
            Device::Sim(d) => d.info(),
        }
    }

    pub(crate) fn name(&self) -> String {
        match self {
            Device::Real(d) => d.name.clone(),
            #[cfg(feature = "sim")]
            Device::Sim(d) => d.name(),
        }
    }

    pub(crate) fn is_simulated(&self) -> bool {
        !matches!(self, Device::Real(_))
    }

    /// `len` (≥ 1) elements whose contents are unspecified (NaN-patterned on the
    /// simulated device, so that a read before a write shows).
    pub(crate) fn alloc<T: Elem>(&self, len: usize) -> Result<Buf<T>> {
        let len = len.max(1);
        Ok(Buf {
            mem: match self {
                Device::Real(d) => Mem::Real(d.alloc(len)?),
                #[cfg(feature = "sim")]
                Device::Sim(d) => Mem::Sim(d.alloc(len, false)?),
            },
        })
    }

    pub(crate) fn zeros<T: Elem>(&self, len: usize) -> Result<Buf<T>> {
        let len = len.max(1);
        Ok(Buf {
            mem: match self {
                Device::Real(d) => Mem::Real(d.zeros(len)?),
                #[cfg(feature = "sim")]
                Device::Sim(d) => Mem::Sim(d.alloc(len, true)?),
            },
        })
    }

    /// A new buffer holding `host` (one element of zeros when `host` is empty).
    pub(crate) fn htod<T: Elem>(&self, host: &[T]) -> Result<Buf<T>> {
        if host.is_empty() {
            return self.zeros(1);
        }
        Ok(Buf {
            mem: match self {
                Device::Real(d) => Mem::Real(d.htod(host)?),
                #[cfg(feature = "sim")]
                Device::Sim(d) => Mem::Sim(d.htod(host)?),
            },
        })
    }

    pub(crate) fn dtoh<T: Elem>(&self, v: View<'_, T>) -> Result<Vec<T>> {
        if v.len == 0 {
            return Ok(Vec::new());
        }
        match (self, &v.buf.mem) {
            (Device::Real(d), Mem::Real(s)) => d.dtoh(s, v.off, v.len),
            #[cfg(feature = "sim")]
            (Device::Sim(d), Mem::Sim(s)) => d.dtoh(s, v.off, v.len),
            #[cfg(feature = "sim")]
            _ => Err(foreign()),
        }
    }

    /// `dst = src` (equal lengths).
    pub(crate) fn copy<T: Elem>(&self, src: View<'_, T>, dst: View<'_, T>) -> Result<()> {
        if src.len != dst.len {
            return Err(backend_err(format!(
                "internal: copying {} elements into {}",
                src.len, dst.len
            )));
        }
        if src.len == 0 {
            return Ok(());
        }
        let bytes = src.len * std::mem::size_of::<T>();
        let (s, d) = (self.ptr(src)?, self.ptr(dst)?);
        match self {
            Device::Real(dev) => dev.copy(s, d, bytes),
            #[cfg(feature = "sim")]
            Device::Sim(dev) => dev.copy(s, d, bytes),
        }
    }

    /// The address a kernel parameter gets for `v`: an error when `v` belongs to another
    /// kind of device (or, simulated, to another simulated device).
    pub(crate) fn ptr<T: Elem>(&self, v: View<'_, T>) -> Result<DevPtr> {
        let base = match (self, &v.buf.mem) {
            (Device::Real(d), Mem::Real(s)) => d.base(s),
            #[cfg(feature = "sim")]
            (Device::Sim(d), Mem::Sim(s)) => d.base(s)?,
            #[cfg(feature = "sim")]
            _ => return Err(foreign()),
        };
        Ok(DevPtr(base + (v.off * std::mem::size_of::<T>()) as u64))
    }

    /// Launches `k` with `params` (the caller built `params` from views checked against
    /// the extents the kernel indexes).
    pub(crate) fn launch<P: KernelParams>(
        &self,
        k: &Kernel<P>,
        dims: LaunchDims,
        params: P,
    ) -> Result<()> {
        match self {
            Device::Real(d) => d.launch(k, dims, params),
            #[cfg(feature = "sim")]
            Device::Sim(d) => d.launch(k, dims, params),
        }
    }

    /// Blocks of `k` that fit on one SM at `threads` threads and `smem` bytes of dynamic
    /// shared memory per block.
    pub(crate) fn occupancy<P: KernelParams>(
        &self,
        k: &Kernel<P>,
        threads: u32,
        smem: usize,
    ) -> Result<usize> {
        match self {
            Device::Real(d) => d.occupancy(k.name, threads, smem),
            #[cfg(feature = "sim")]
            Device::Sim(d) => Ok(d.occupancy(threads, smem)),
        }
    }

    /// One column-major SGEMM (cuBLAS's `cublasSgemm` semantics, on the device's stream).
    pub(crate) fn sgemm(
        &self,
        g: &ColMajorGemm,
        a: View<'_, f32>,
        b: View<'_, f32>,
        c: View<'_, f32>,
    ) -> Result<()> {
        let (pa, pb, pc) = (self.ptr(a)?, self.ptr(b)?, self.ptr(c)?);
        match self {
            Device::Real(d) => d.sgemm(g, pa, pb, pc),
            #[cfg(feature = "sim")]
            Device::Sim(d) => d.sgemm(g, (pa, a.len), (pb, b.len), (pc, c.len)),
        }
    }

    /// Column-major SGEMMs of one shape, one per `(a, b, c)` (cuBLAS's
    /// `cublasSgemmBatched` semantics: the device gets arrays of the operands' pointers).
    pub(crate) fn sgemm_batched(
        &self,
        g: &ColMajorGemm,
        ops: &[(View<'_, f32>, View<'_, f32>, View<'_, f32>)],
    ) -> Result<()> {
        let count = i32::try_from(ops.len()).map_err(|_| {
            backend_err(format!(
                "{} products exceed cuBLAS's batch count",
                ops.len()
            ))
        })?;
        let mut ptrs = Vec::with_capacity(ops.len());
        for (a, b, c) in ops {
            ptrs.push((self.ptr(*a)?, self.ptr(*b)?, self.ptr(*c)?));
        }
        match self {
            Device::Real(d) => {
                let table = |f: fn(&(DevPtr, DevPtr, DevPtr)) -> DevPtr| -> Result<Buf<u64>> {
                    self.htod(&ptrs.iter().map(|p| f(p).0).collect::<Vec<u64>>())
                };
                let (ta, tb, tc) = (table(|p| p.0)?, table(|p| p.1)?, table(|p| p.2)?);
                let (pa, pb, pc) = (
                    self.ptr(ta.all())?,
                    self.ptr(tb.all())?,
                    self.ptr(tc.all())?,
                );
                d.sgemm_batched(g, pa, pb, pc, count)
            }
            #[cfg(feature = "sim")]
            Device::Sim(d) => {
                let with_len: Vec<_> = ptrs
                    .iter()
                    .zip(ops)
                    .map(|(p, (a, b, c))| ((p.0, a.len), (p.1, b.len), (p.2, c.len)))
                    .collect();
                d.sgemm_batched(g, &with_len)
            }
        }
    }

    /// Waits for all queued work and reports any asynchronous error.
    pub(crate) fn synchronize(&self) -> Result<()> {
        match self {
            Device::Real(d) => d.synchronize(),
            #[cfg(feature = "sim")]
            Device::Sim(_) => Ok(()),
        }
    }
}

#[cfg(feature = "sim")]
fn foreign() -> Error {
    backend_err(
        "a tensor of one device was passed to another (real vs simulated, or two simulated \
         devices): upload it to this backend first",
    )
}
