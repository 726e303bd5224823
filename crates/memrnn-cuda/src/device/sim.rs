//! The simulated device: `kernels/*.cu` compiled for the host through
//! `sim/cuda_sim.h` (build.rs) and run by the SIMT simulator of `sim/runtime.cpp`, every
//! CUDA thread a fiber that switches only at warp, block and grid barriers. Memory is
//! host memory (256-byte aligned like cudaMalloc, NaN-patterned when not zeroed); the
//! cuBLAS products run as CPU GEMMs with cuBLAS's exact column-major semantics and
//! argument checks, so a wrong transpose or leading dimension fails a test here as it
//! would on a GPU.
//!
//! What it does not model: speed, the GPU's weak memory model and races between
//! barriers (compute-sanitizer's racecheck and a real GPU remain necessary), register
//! limits in the occupancy figure, and static `__shared__` in cooperative kernels.

use super::{backend_err, ColMajorGemm, DeviceInfo, Elem, LaunchDims};
use crate::kernels::{DevPtr, Kernel, KernelParams};
use memrnn_core::Result;
use std::alloc::Layout;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The properties of a simulated device: what the launch planner sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimProps {
    /// Streaming multiprocessors.
    pub sms: u32,
    /// Opt-in dynamic shared memory per block, bytes.
    pub max_smem_optin: u32,
    /// Shared memory per SM, bytes (occupancy).
    pub smem_per_sm: u32,
    /// Resident threads per SM (occupancy).
    pub max_threads_per_sm: u32,
    /// Whether cooperative launches (grid-wide sync) are supported.
    pub cooperative: bool,
}

impl SimProps {
    /// An H100/H200-like device: 132 SMs, 227 KiB of opt-in shared memory per block.
    pub fn h100_like() -> SimProps {
        SimProps {
            sms: 132,
            max_smem_optin: 232_448,
            smem_per_sm: 233_472,
            max_threads_per_sm: 2048,
            cooperative: true,
        }
    }

    /// A small device (2 SMs, 48 KiB per block): the persistent recurrence rarely fits, so
    /// the per-step path and multi-pass tiles run.
    pub fn small() -> SimProps {
        SimProps {
            sms: 2,
            max_smem_optin: 49_152,
            smem_per_sm: 65_536,
            max_threads_per_sm: 1024,
            cooperative: true,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.sms == 0 || self.max_threads_per_sm < 32 || self.smem_per_sm < self.max_smem_optin {
            return Err(backend_err(format!(
                "simulated device properties are inconsistent: {self:?} (need sms ≥ 1, \
                 max_threads_per_sm ≥ 32, smem_per_sm ≥ max_smem_optin)"
            )));
        }
        Ok(())
    }
}

/// Shared memory the driver reserves per block (CUDA 11+: 1 KiB).
const RESERVED_SMEM_PER_BLOCK: usize = 1024;
/// Static shared memory a kernel may use without opting in.
const DEFAULT_SMEM_LIMIT: u32 = 48 * 1024;
/// cudaMalloc's alignment.
const ALIGN: usize = 256;

#[repr(C)]
struct MrSimDim3 {
    x: u32,
    y: u32,
    z: u32,
}

#[repr(C)]
struct MrSimLaunch {
    kernel: *const c_char,
    grid: MrSimDim3,
    block: MrSimDim3,
    dynamic_shared_bytes: u64,
    cooperative: i32,
}

#[cfg(test)]
#[repr(C)]
struct LayoutRow {
    strukt: *const c_char,
    field: *const c_char,
    offset: usize,
    size: usize,
}

unsafe extern "C" {
    // sim/mr_sim.h: runs the whole launch on the calling thread; 0 or an error message.
    fn mr_sim_launch(
        launch: *const MrSimLaunch,
        entry: unsafe extern "C" fn(*mut c_void),
        ctx: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    // sim/layout.cpp.
    #[cfg(test)]
    fn mr_sim_param_layout(rows: *mut *const LayoutRow) -> usize;
}

/// `(struct, field, offset, size)` of every kernel parameter field, from params.cuh.
#[cfg(test)]
pub(crate) fn param_layout_table() -> Vec<(String, String, usize, usize)> {
    let mut rows: *const LayoutRow = std::ptr::null();
    // SAFETY: layout.cpp returns a pointer to its static table and its length.
    let n = unsafe { mr_sim_param_layout(&mut rows) };
    // SAFETY: `rows` points at `n` static rows of NUL-terminated static strings.
    let rows = unsafe { std::slice::from_raw_parts(rows, n) };
    rows.iter()
        .map(|r| {
            // SAFETY: static NUL-terminated literals (see above).
            let s = unsafe { CStr::from_ptr(r.strukt) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: as above.
            let f = unsafe { CStr::from_ptr(r.field) }
                .to_string_lossy()
                .into_owned();
            (s, f, r.offset, r.size)
        })
        .collect()
}

/// What every fiber's entry gets: the kernel and its parameters.
struct SimCall<P: KernelParams> {
    entry: crate::kernels::SimEntry<P>,
    params: P,
}

/// Runs on every simulated thread: calls the host-compiled kernel with its parameters.
unsafe extern "C" fn run_thread<P: KernelParams>(ctx: *mut c_void) {
    // SAFETY: `ctx` is the `SimCall<P>` that `SimDevice::launch` keeps alive (on its
    // stack) until mr_sim_launch returns, and only reads.
    let call = unsafe { &*(ctx as *const SimCall<P>) };
    // SAFETY: the entry is the kernel compiled from kernels/*.cu for this parameter type
    // (the `kernels!` table pairs them), called on a simulator fiber as it requires.
    unsafe { (call.entry)(call.params) }
}

/// A cuBLAS operand on the simulated device: its address and its buffer's elements from
/// there on.
type GemmOperand = (DevPtr, usize);

/// A simulated device allocation.
pub(crate) struct SimMem<T: Elem> {
    ptr: NonNull<T>,
    len: usize,
    device: u64,
}

impl<T: Elem> SimMem<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn layout(len: usize) -> Layout {
        // len ≥ 1 and the size was checked against isize::MAX in alloc.
        Layout::from_size_align(len * std::mem::size_of::<T>(), ALIGN)
            .unwrap_or_else(|_| Layout::new::<u8>())
    }
}

impl<T: Elem> Drop for SimMem<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `SimDevice::alloc` with this very layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr() as *mut u8, Self::layout(self.len)) }
    }
}

// SAFETY: like device memory, a SimMem's contents are only touched by its device's
// operations (kernels, copies, products, downloads), and each SimDevice runs one operation
// at a time under its lock; the handle itself is just an address and a length.
unsafe impl<T: Elem> Send for SimMem<T> {}
// SAFETY: as above: shared handles never give out references to the contents.
unsafe impl<T: Elem> Sync for SimMem<T> {}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A simulated device: its properties and the lock that serialises its operations (as
/// the legacy default stream serialises a GPU's).
pub(crate) struct SimDevice {
    props: SimProps,
    id: u64,
    lock: Mutex<()>,
}

impl SimDevice {
    pub(crate) fn new(props: SimProps) -> Result<SimDevice> {
        props.validate()?;
        Ok(SimDevice {
            props,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            lock: Mutex::new(()),
        })
    }

    pub(crate) fn info(&self) -> DeviceInfo {
        DeviceInfo {
            sms: self.props.sms,
            max_smem_optin: self.props.max_smem_optin,
            cooperative: self.props.cooperative,
        }
    }

    pub(crate) fn name(&self) -> String {
        format!(
            "cuda-sim (SIMULATED device on the CPU: {} SMs, {} KiB shared memory per block; \
             checks what the kernels compute, not their speed)",
            self.props.sms,
            self.props.max_smem_optin / 1024
        )
    }

    fn guard(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.lock
            .lock()
            .map_err(|_| backend_err("simulated device poisoned by an earlier panic"))
    }

    pub(crate) fn alloc<T: Elem>(&self, len: usize, zero: bool) -> Result<SimMem<T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .filter(|b| *b <= isize::MAX as usize - ALIGN)
            .ok_or_else(|| backend_err(format!("allocating {len} elements overflows")))?;
        let layout = SimMem::<T>::layout(len);
        // SAFETY: the layout has a non-zero size (len ≥ 1, checked by the caller).
        let raw = unsafe { std::alloc::alloc(layout) };
        let ptr = NonNull::new(raw as *mut T).ok_or_else(|| {
            backend_err(format!(
                "out of host memory allocating {bytes} bytes for the simulated device"
            ))
        })?;
        // Zeros, or the bytes of a quiet NaN (0x7fc00000) so that an element read before
        // anything wrote it shows in the results, as uninitialised device memory would.
        let pattern: [u8; 4] = if zero {
            [0; 4]
        } else {
            0x7fc0_0000u32.to_le_bytes()
        };
        // SAFETY: `raw` holds `bytes` writable bytes just allocated.
        let s = unsafe { std::slice::from_raw_parts_mut(raw, bytes) };
        for (i, b) in s.iter_mut().enumerate() {
            *b = pattern[i % 4];
        }
        Ok(SimMem {
            ptr,
            len,
            device: self.id,
        })
    }

    pub(crate) fn htod<T: Elem>(&self, host: &[T]) -> Result<SimMem<T>> {
        let m = self.alloc::<T>(host.len(), false)?;
        let _g = self.guard()?;
        // SAFETY: `m` holds host.len() elements, freshly allocated, not aliased.
        unsafe { std::ptr::copy_nonoverlapping(host.as_ptr(), m.ptr.as_ptr(), host.len()) };
        Ok(m)
    }

    pub(crate) fn dtoh<T: Elem>(&self, m: &SimMem<T>, off: usize, len: usize) -> Result<Vec<T>> {
        self.own(m)?;
        let _g = self.guard()?;
        let mut out = vec![T::default(); len];
        // SAFETY: View guarantees off + len ≤ m.len; no operation writes under the lock.
        unsafe { std::ptr::copy_nonoverlapping(m.ptr.as_ptr().add(off), out.as_mut_ptr(), len) };
        Ok(out)
    }

    fn own<T: Elem>(&self, m: &SimMem<T>) -> Result<()> {
        if m.device != self.id {
            return Err(super::foreign());
        }
        Ok(())
    }

    pub(crate) fn base<T: Elem>(&self, m: &SimMem<T>) -> Result<u64> {
        self.own(m)?;
        Ok(m.ptr.as_ptr() as u64)
    }

    pub(crate) fn copy(&self, src: DevPtr, dst: DevPtr, bytes: usize) -> Result<()> {
        let _g = self.guard()?;
        // SAFETY: both ranges come from views of live buffers of this device covering
        // `bytes` (Device::copy); `copy` (memmove) allows overlap, as cuMemcpy's result
        // for overlapping ranges is undefined anyway.
        unsafe { std::ptr::copy(src.0 as *const u8, dst.0 as *mut u8, bytes) };
        Ok(())
    }

    /// Blocks per SM: the lesser of the thread and shared-memory limits (registers are
    /// not modelled), as cuOccupancyMaxActiveBlocksPerMultiprocessor would count them.
    pub(crate) fn occupancy(&self, threads: u32, smem: usize) -> usize {
        let warps = (threads as usize).div_ceil(32).max(1);
        let by_threads = self.props.max_threads_per_sm as usize / 32 / warps;
        let by_smem = self.props.smem_per_sm as usize / (smem + RESERVED_SMEM_PER_BLOCK);
        by_threads.min(by_smem).min(32)
    }

    pub(crate) fn launch<P: KernelParams>(
        &self,
        k: &Kernel<P>,
        d: LaunchDims,
        params: P,
    ) -> Result<()> {
        self.check_launch(k, &d)?;
        let call = SimCall {
            entry: k.sim,
            params,
        };
        let name = CString::new(k.name).map_err(|_| backend_err("kernel name has a NUL"))?;
        let l = MrSimLaunch {
            kernel: name.as_ptr(),
            grid: MrSimDim3 {
                x: d.grid.0,
                y: d.grid.1,
                z: d.grid.2,
            },
            block: MrSimDim3 {
                x: d.block.0,
                y: d.block.1,
                z: d.block.2,
            },
            dynamic_shared_bytes: d.smem as u64,
            cooperative: d.cooperative as i32,
        };
        // On the stack: a launch is the per-step path's inner loop.
        let mut err = [0 as c_char; 1024];
        let _g = self.guard()?;
        // SAFETY: `l`, `name` and `call` outlive the call, which runs the launch to
        // completion on this thread; `run_thread::<P>` reads `call` as a SimCall<P>. The
        // kernel's pointers were built by a launcher in ops/ from views of this device's
        // live buffers, checked against the extents the kernel indexes; the launch shape
        // was checked above against the device's limits.
        let rc = unsafe {
            mr_sim_launch(
                &l,
                run_thread::<P>,
                &call as *const SimCall<P> as *mut c_void,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc != 0 {
            // SAFETY: the runtime NUL-terminates within err_len.
            let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
            return Err(backend_err(format!("simulated launch failed: {msg}")));
        }
        Ok(())
    }

    /// The driver's launch checks, with its error names.
    fn check_launch<P: KernelParams>(&self, k: &Kernel<P>, d: &LaunchDims) -> Result<()> {
        let (gx, gy, gz) = d.grid;
        let (bx, by, bz) = d.block;
        let threads = bx as u64 * by as u64 * bz as u64;
        let bad = |why: String| {
            Err(backend_err(format!(
                "{}: CUDA_ERROR_INVALID_VALUE (simulated): {why}",
                k.name
            )))
        };
        if gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 {
            return bad(format!(
                "empty launch grid {:?} block {:?}",
                d.grid, d.block
            ));
        }
        if threads > 1024 || bz > 64 || gx > i32::MAX as u32 || gy > 65_535 || gz > 65_535 {
            return bad(format!(
                "launch grid {:?} block {:?} beyond the device limits",
                d.grid, d.block
            ));
        }
        let limit = if k.big_smem {
            self.props.max_smem_optin
        } else {
            DEFAULT_SMEM_LIMIT
        };
        if d.smem > limit {
            return bad(format!(
                "{} bytes of dynamic shared memory, the limit for this kernel is {limit}",
                d.smem
            ));
        }
        if d.cooperative {
            if !self.props.cooperative {
                return bad("cooperative launch on a device without it".into());
            }
            let blocks = gx as u64 * gy as u64 * gz as u64;
            let fit =
                self.occupancy(threads as u32, d.smem as usize) as u64 * self.props.sms as u64;
            if blocks > fit {
                return Err(backend_err(format!(
                    "{}: CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE (simulated): {blocks} blocks, \
                     {fit} can be co-resident",
                    k.name
                )));
            }
        }
        Ok(())
    }

    /// `cublasSgemm` on the host: cuBLAS's argument checks (CUBLAS_STATUS_INVALID_VALUE),
    /// then every element the product reads or writes checked to lie inside its view (on
    /// a GPU an overrun would be an illegal address), then the product in f32 with f32
    /// accumulation in k order.
    pub(crate) fn sgemm(
        &self,
        g: &ColMajorGemm,
        a: (DevPtr, usize),
        b: (DevPtr, usize),
        c: (DevPtr, usize),
    ) -> Result<()> {
        self.sgemm_named("cublasSgemm", g, a, b, c)
    }

    /// `cublasSgemmBatched` on the host: its argument checks once, then every product as
    /// `sgemm` computes it (so a batched product is bit for bit the products one by one;
    /// on a GPU cuBLAS may choose another kernel for the batch: f32 reordering), each
    /// operand checked against its own buffer.
    pub(crate) fn sgemm_batched(
        &self,
        g: &ColMajorGemm,
        ops: &[(GemmOperand, GemmOperand, GemmOperand)],
    ) -> Result<()> {
        for &(a, b, c) in ops {
            self.sgemm_named("cublasSgemmBatched", g, a, b, c)?;
        }
        Ok(())
    }

    fn sgemm_named(
        &self,
        name: &str,
        g: &ColMajorGemm,
        a: (DevPtr, usize),
        b: (DevPtr, usize),
        c: (DevPtr, usize),
    ) -> Result<()> {
        let invalid = |why: String| {
            Err(backend_err(format!(
                "{name}: CUBLAS_STATUS_INVALID_VALUE (simulated): {why} in {g:?}"
            )))
        };
        if g.m < 0 || g.n < 0 || g.k < 0 {
            return invalid("negative size".into());
        }
        let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
        // Rows of A and B as stored (column-major: the leading dimension counts rows).
        let a_rows = if g.trans_a { k } else { m };
        let b_rows = if g.trans_b { n } else { k };
        if (g.lda as i64) < a_rows.max(1) as i64 {
            return invalid(format!("lda {} < {}", g.lda, a_rows.max(1)));
        }
        if (g.ldb as i64) < b_rows.max(1) as i64 {
            return invalid(format!("ldb {} < {}", g.ldb, b_rows.max(1)));
        }
        if (g.ldc as i64) < m.max(1) as i64 {
            return invalid(format!("ldc {} < {}", g.ldc, m.max(1)));
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        let (lda, ldb, ldc) = (g.lda as usize, g.ldb as usize, g.ldc as usize);
        let a_cols = if g.trans_a { m } else { k };
        let b_cols = if g.trans_b { k } else { n };
        let span = |rows: usize, cols: usize, ld: usize| {
            if rows == 0 || cols == 0 {
                0
            } else {
                (cols - 1) * ld + rows
            }
        };
        for (what, need, have) in [
            ("A", span(a_rows, a_cols, lda), a.1),
            ("B", span(b_rows, b_cols, ldb), b.1),
            ("C", span(m, n, ldc), c.1),
        ] {
            if need > have {
                return Err(backend_err(format!(
                    "{name} (simulated): operand {what} is read up to element {need} but \
                     its buffer holds {have} (an illegal address on a GPU) in {g:?}"
                )));
            }
        }
        let _g = self.guard()?;
        let (pa, pb, pc) = (
            a.0 .0 as *const f32,
            b.0 .0 as *const f32,
            c.0 .0 as *mut f32,
        );
        // Element (i, l) of op(A) and (l, j) of op(B), column-major.
        let at = |i: usize, l: usize| {
            let off = if g.trans_a { i * lda + l } else { l * lda + i };
            // SAFETY: off < span(A) ≤ a.1, checked above.
            unsafe { *pa.add(off) }
        };
        let bt = |l: usize, j: usize| {
            let off = if g.trans_b { l * ldb + j } else { j * ldb + l };
            // SAFETY: off < span(B) ≤ b.1, checked above.
            unsafe { *pb.add(off) }
        };
        let mut col = vec![0.0f32; m];
        for j in 0..n {
            col.iter_mut().for_each(|v| *v = 0.0);
            for l in 0..k {
                let blj = bt(l, j);
                for (i, acc) in col.iter_mut().enumerate() {
                    *acc += at(i, l) * blj;
                }
            }
            for (i, acc) in col.iter().enumerate() {
                // SAFETY: j * ldc + i < span(C) ≤ c.1, checked above; C does not alias A
                // or B (cuBLAS requires it too; the backend never passes aliases).
                unsafe {
                    let p = pc.add(j * ldc + i);
                    // beta = 0 must not read C (it may hold NaN), as in cuBLAS.
                    *p = if g.beta == 0.0 {
                        g.alpha * acc
                    } else {
                        g.alpha * acc + g.beta * *p
                    };
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Buf, Device};

    fn dev() -> Device {
        Device::Sim(SimDevice::new(SimProps::small()).expect("sim device"))
    }

    /// Column-major reference product for the gemm test.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
    ) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for j in 0..n {
            for i in 0..m {
                for l in 0..k {
                    let av = if ta { a[i * lda + l] } else { a[l * lda + i] } as f64;
                    let bv = if tb { b[l * ldb + j] } else { b[j * ldb + l] } as f64;
                    c[j * m + i] += av * bv;
                }
            }
        }
        c
    }

    #[test]
    fn sgemm_follows_cublas_column_major_semantics() {
        let d = dev();
        let (m, n, k) = (5, 3, 4);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let lda = if ta { k } else { m } + 2;
            let ldb = if tb { n } else { k } + 1;
            let a: Vec<f32> = (0..lda * 6).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..ldb * 6).map(|i| (i as f32 * 0.11).cos()).collect();
            let (ga, gb) = (d.htod(&a).expect("a"), d.htod(&b).expect("b"));
            let gc: Buf<f32> = d.alloc(m * n).expect("c");
            let g = ColMajorGemm {
                trans_a: ta,
                trans_b: tb,
                m: m as i32,
                n: n as i32,
                k: k as i32,
                alpha: 1.0,
                lda: lda as i32,
                ldb: ldb as i32,
                beta: 0.0,
                ldc: m as i32,
            };
            d.sgemm(&g, ga.all(), gb.all(), gc.all()).expect("sgemm");
            let got = d.dtoh(gc.all()).expect("c");
            let want = reference(ta, tb, m, n, k, &a, lda, &b, ldb);
            for (x, y) in got.iter().zip(&want) {
                assert!((*x as f64 - y).abs() < 1e-5, "ta={ta} tb={tb}: {x} vs {y}");
            }
            // A leading dimension below the stored rows is refused, as cuBLAS does.
            let bad = ColMajorGemm {
                ldc: m as i32 - 1,
                ..g
            };
            let e = d
                .sgemm(&bad, ga.all(), gb.all(), gc.all())
                .expect_err("ldc < m");
            assert!(e.to_string().contains("INVALID_VALUE"), "{e}");
            // An operand too short for the product is an error, not a read past its end.
            let short = d.alloc::<f32>(3).expect("short");
            let e = d
                .sgemm(&g, short.all(), gb.all(), gc.all())
                .expect_err("short A");
            assert!(e.to_string().contains("illegal address"), "{e}");
        }
    }

    #[test]
    fn fresh_memory_is_nan_and_tensors_stay_on_their_device() {
        let d = dev();
        let b: Buf<f32> = d.alloc(5).expect("alloc");
        assert!(d.dtoh(b.all()).expect("dtoh").iter().all(|v| v.is_nan()));
        let z: Buf<f32> = d.zeros(5).expect("zeros");
        assert!(d.dtoh(z.all()).expect("dtoh").iter().all(|v| *v == 0.0));
        let other = dev();
        let e = other.dtoh(b.all()).expect_err("foreign tensor");
        assert!(e.to_string().contains("another"), "{e}");
    }

    #[test]
    fn occupancy_counts_threads_and_shared_memory() {
        let d = SimDevice::new(SimProps::h100_like()).expect("sim");
        assert_eq!(d.occupancy(256, 0), 8);
        assert_eq!(d.occupancy(256, 200 * 1024), 1);
        assert_eq!(d.occupancy(1024, 0), 2);
    }
}
