//! Every kernel memrnn launches, in one table, with its parameter struct.
//!
//! Each `extern "C" __global__` entry point of `kernels/*.cu` takes exactly one struct by
//! value (`kernels/params.cuh`); the `#[repr(C)]` structs here mirror them field for
//! field. `tests::param_layouts_match_the_kernels` compares every field's offset and size
//! with the `offsetof` table that the simulated device compiles from `params.cuh` itself,
//! so an argument out of order or of the wrong width fails a test instead of reading
//! garbage on the device.
//!
//! A [`Kernel`] names its entry point and PTX module, says whether it may use the device's
//! whole opt-in shared memory, and (with the `sim` feature) carries the host-compiled
//! entry point that the simulated device runs.

use std::marker::PhantomData;

/// A device address as a kernel parameter (a `T*` field of a parameter struct): the raw
/// `CUdeviceptr` on a GPU, the host address on the simulated device.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DevPtr(pub u64);

/// `mr::FwdArgs`. Also an element of a device array (the ensemble kernels' argument).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FwdArgs {
    pub a: DevPtr,
    pub w_hh: DevPtr,
    pub b_ih: DevPtr,
    pub b_hh: DevPtr,
    pub s0: DevPtr,
    pub h_seq: DevPtr,
    pub gates: DevPtr,
    pub c_seq: DevPtr,
    pub s_final: DevPtr,
    pub t: i32,
    pub b: i32,
    pub h: i32,
}

/// `mr::BwdArgs`. Also an element of a device array (the ensemble kernels' argument).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BwdArgs {
    pub w_t: DevPtr,
    pub h_seq: DevPtr,
    pub gates: DevPtr,
    pub c_seq: DevPtr,
    pub s0: DevPtr,
    pub dh_seq: DevPtr,
    pub d: DevPtr,
    pub da: DevPtr,
    pub du: DevPtr,
    pub ds0: DevPtr,
    pub t: i32,
    pub b: i32,
    pub h: i32,
    pub has_dh: i32,
}

/// `mr::TileArgs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TileArgs {
    pub jt: i32,
    pub bt: i32,
    pub kc: i32,
    pub ks: i32,
}

/// `MrRecFwdParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecFwdParams {
    pub a: FwdArgs,
    pub tile: TileArgs,
    pub t: i32,
}

/// `MrRecBwdParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecBwdParams {
    pub a: BwdArgs,
    pub tile: TileArgs,
    pub t: i32,
}

/// `MrRecFwdEnsParams`: `a` points to a device array of `members` [`FwdArgs`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecFwdEnsParams {
    pub a: DevPtr,
    pub tile: TileArgs,
    pub members: i32,
    pub blocks_per_member: i32,
}

/// `MrRecBwdEnsParams`: `a` points to a device array of `members` [`BwdArgs`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecBwdEnsParams {
    pub a: DevPtr,
    pub tile: TileArgs,
    pub members: i32,
    pub blocks_per_member: i32,
}

// SAFETY: #[repr(C)] structs of DevPtr and i32 fields only (mirrored in params.cuh and
// checked by `param_layouts_match_the_kernels`): every bit pattern, all-zero included, is
// a valid value, and the device reads them byte for byte from the arrays the ensemble
// launchers upload.
unsafe impl cudarc::driver::DeviceRepr for FwdArgs {}
// SAFETY: as above.
unsafe impl cudarc::driver::ValidAsZeroBits for FwdArgs {}
// SAFETY: as above.
unsafe impl cudarc::driver::DeviceRepr for BwdArgs {}
// SAFETY: as above.
unsafe impl cudarc::driver::ValidAsZeroBits for BwdArgs {}

/// `MrAdamParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamParams {
    pub p: DevPtr,
    pub g: DevPtr,
    pub m: DevPtr,
    pub v: DevPtr,
    pub n: i64,
    pub beta1: f32,
    pub beta2: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
}

/// `MrColSumParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColSumParams {
    pub m: DevPtr,
    pub out: DevPtr,
    pub r: i64,
    pub c: i32,
}

/// `MrTransposeParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct TransposeParams {
    pub inp: DevPtr,
    pub out: DevPtr,
    pub r: i32,
    pub c: i32,
}

/// `MrSpeedParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpeedParams {
    pub f: DevPtr,
    pub s: DevPtr,
    pub speed: DevPtr,
    pub twice_e: DevPtr,
    pub n: i32,
    pub s_len: i32,
}

/// `MrSubParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SubParams {
    pub out: DevPtr,
    pub a: DevPtr,
    pub b: DevPtr,
    pub n: i64,
}

/// `MrRepeatRowsParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RepeatRowsParams {
    pub inp: DevPtr,
    pub out: DevPtr,
    pub n: i32,
    pub s: i32,
    pub c: i32,
}

/// `MrOneHotParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct OneHotParams {
    pub out: DevPtr,
    pub n: i32,
    pub s: i32,
}

/// `MrRoundParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RoundParams {
    pub inp: DevPtr,
    pub out: DevPtr,
    pub out_t: DevPtr,
    pub out_f32: DevPtr,
    pub first_overflow: DevPtr,
    pub r: i32,
    pub c: i32,
}

/// `MrFillParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FillParams {
    pub out: DevPtr,
    pub v: f32,
    pub n: i64,
}

/// `MrSpMember`: one network's buffers in a slow-point search (an entry of the device
/// table `SlowPointsParams::members` points at).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpMember {
    pub wf: DevPtr,
    pub wb: DevPtr,
    pub a_bar: DevPtr,
    pub b_hh: DevPtr,
    pub states: DevPtr,
    pub m: DevPtr,
    pub v: DevPtr,
    pub status: DevPtr,
    pub idx: DevPtr,
}

/// `MrSlowPointsParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlowPointsParams {
    pub members: DevPtr,
    pub tiles: DevPtr,
    pub h: i32,
    pub iters: i32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub tol: f32,
    pub stall_rel: f32,
    pub max_iters: u32,
    pub stall_window: u32,
}

/// `MrPackParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackParams {
    pub w_hh: DevPtr,
    pub wf: DevPtr,
    pub wb: DevPtr,
    pub h: i32,
    pub gh: i32,
}

/// `MrCompactParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct CompactParams {
    pub status: DevPtr,
    pub k: i32,
    pub with_max_iters: i32,
    pub idx: DevPtr,
    pub count: DevPtr,
}

/// `MrReadoutParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadoutParams {
    pub h: DevPtr,
    pub readout: DevPtr,
    pub targets: DevPtr,
    pub weights: DevPtr,
    pub g: DevPtr,
    pub dh: DevPtr,
    pub row_stats: DevPtr,
    pub rows: i32,
    pub h_len: i32,
    pub c: i32,
    pub inv_rows: f32,
}

/// `MrAxpyParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct AxpyParams {
    pub y: DevPtr,
    pub x: DevPtr,
    pub n: i64,
    pub alpha: f32,
}

/// `mr::AdamGroupArgs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AdamGroupArgs {
    pub p: DevPtr,
    pub g: DevPtr,
    pub m: DevPtr,
    pub v: DevPtr,
    pub n: i64,
}

/// `MrClipAdamParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClipAdamParams {
    pub g0: AdamGroupArgs,
    pub g1: AdamGroupArgs,
    pub g2: AdamGroupArgs,
    pub g3: AdamGroupArgs,
    pub clip: DevPtr,
    pub loss: DevPtr,
    pub halted: DevPtr,
    pub max_loss: f32,
    pub has_guard: i32,
    pub max_norm: f32,
    pub has_max: i32,
    pub beta1: f32,
    pub beta2: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
}

/// The most ensemble members one `clip_*_ens_f32` launch takes (`MR_CLIP_ENS_MAX`).
pub(crate) const CLIP_ENS_MAX: usize = 8;

/// `MrClipAdamEnsParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClipAdamEnsParams {
    pub m: [ClipAdamParams; CLIP_ENS_MAX],
    pub members: i32,
    pub blocks_per_member: i32,
}

/// `MrTaskParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct TaskParams {
    pub x: DevPtr,
    pub targets: DevPtr,
    pub weights: DevPtr,
    pub images: DevPtr,
    pub offsets: DevPtr,
    pub k0: u32,
    pub k1: u32,
    pub t: i32,
    pub b: i32,
    pub p: i32,
    pub vocab: i32,
    pub delta_min: i32,
    pub mean: f32,
    pub std: f32,
    pub t0: i32,
    pub t_read: u32,
    pub t_report: u32,
}

/// `MrArgmaxParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ArgmaxParams {
    pub h: DevPtr,
    pub readout: DevPtr,
    pub out: DevPtr,
    pub rows: i32,
    pub h_len: i32,
    pub c: i32,
}

/// A parameter struct of some kernel: plain old data, `#[repr(C)]`, mirrored in
/// `kernels/params.cuh`.
///
/// # Safety
/// Implementors must be `#[repr(C)]` structs of `DevPtr`, `i32`, `u32`, `i64` and `f32`
/// fields (and such structs) whose layout is exactly the C struct of the same name, so
/// that the driver (and the simulated device) can copy them byte for byte into the
/// kernel's parameter space.
pub(crate) unsafe trait KernelParams:
    Copy + Send + Sync + cudarc::driver::DeviceRepr + 'static
{
}

macro_rules! params {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: a #[repr(C)] struct of plain fields, mirrored in params.cuh and checked
        // field by field by `param_layouts_match_the_kernels`.
        unsafe impl KernelParams for $t {}
        // SAFETY: as above: the driver copies these bytes into the kernel's parameters.
        unsafe impl cudarc::driver::DeviceRepr for $t {}
    )*};
}
params!(
    RecFwdParams,
    RecBwdParams,
    RecFwdEnsParams,
    RecBwdEnsParams,
    AdamParams,
    ColSumParams,
    TransposeParams,
    SpeedParams,
    SubParams,
    RepeatRowsParams,
    OneHotParams,
    FillParams,
    RoundParams,
    SlowPointsParams,
    PackParams,
    CompactParams,
    ReadoutParams,
    AxpyParams,
    ClipAdamParams,
    ClipAdamEnsParams,
    TaskParams,
    ArgmaxParams,
);

/// The PTX module a kernel lives in: one per `kernels/*.cu`, named after the file in
/// CamelCase (`slowpoints.cu` → `Slowpoints`); generated by `cargo xtask ptx`.
pub(crate) use crate::ptx::Module;

/// The host-compiled entry point of a kernel on the simulated device.
#[cfg(feature = "sim")]
pub(crate) type SimEntry<P> = unsafe extern "C" fn(P);

/// One kernel: its entry point's name, shared-memory needs and parameter type (its
/// module is in [`ALL`]).
pub(crate) struct Kernel<P: KernelParams> {
    pub name: &'static str,
    /// Uses dynamic shared memory beyond the default 48 KiB: the driver must be told
    /// (`CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`) once at load time. The real
    /// device reads it from [`ALL`]; the simulated device checks launches against it.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub big_smem: bool,
    #[cfg(feature = "sim")]
    pub sim: SimEntry<P>,
    _params: PhantomData<fn(P)>,
}

/// A kernel's name, module and shared-memory flag, without its parameter type: what the
/// loader iterates over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KernelInfo {
    pub name: &'static str,
    pub module: Module,
    pub big_smem: bool,
}

/// The kernel table: one line per entry point, `CONST = name(Params) in Module[, big_smem]`.
/// It declares each kernel's constant, its host-compiled entry point for the simulated
/// device, and the loader's list [`ALL`].
macro_rules! kernels {
    ($($konst:ident = $name:ident($p:ty) in $module:ident $(, $big:ident)?;)*) => {
        #[cfg(feature = "sim")]
        mod sim_entries {
            use super::*;
            // SAFETY (of the declarations): each is the host-compiled `extern "C"` entry
            // point of the same name in kernels/*.cu (built by build.rs through
            // sim/cuda_sim.h), taking its parameter struct by value; the layouts are
            // checked by the layout test. They are only ever called on a fiber of the
            // simulator, from `SimDevice::launch`.
            unsafe extern "C" {
                $(pub fn $name(p: $p);)*
            }
        }
        $(
            pub(crate) const $konst: Kernel<$p> = Kernel {
                name: stringify!($name),
                big_smem: kernels!(@big $($big)?),
                #[cfg(feature = "sim")]
                sim: sim_entries::$name,
                _params: PhantomData,
            };
        )*
        /// Every kernel, for the loader.
        pub(crate) const ALL: &[KernelInfo] = &[$(KernelInfo {
            name: stringify!($name),
            module: Module::$module,
            big_smem: kernels!(@big $($big)?),
        }),*];
    };
    (@big big_smem) => { true };
    (@big) => { false };
}

kernels! {
    RNN_SEQ_FWD = rnn_seq_fwd_f32(RecFwdParams) in Rnn, big_smem;
    RNN_STEP_FWD = rnn_step_fwd_f32(RecFwdParams) in Rnn, big_smem;
    RNN_SEQ_BWD = rnn_seq_bwd_f32(RecBwdParams) in Rnn, big_smem;
    RNN_STEP_BWD = rnn_step_bwd_f32(RecBwdParams) in Rnn, big_smem;
    RNN_SEQ_FWD_ENS = rnn_seq_fwd_ens_f32(RecFwdEnsParams) in Rnn, big_smem;
    RNN_SEQ_BWD_ENS = rnn_seq_bwd_ens_f32(RecBwdEnsParams) in Rnn, big_smem;
    GRU_SEQ_FWD = gru_seq_fwd_f32(RecFwdParams) in Gru, big_smem;
    GRU_STEP_FWD = gru_step_fwd_f32(RecFwdParams) in Gru, big_smem;
    GRU_SEQ_BWD = gru_seq_bwd_f32(RecBwdParams) in Gru, big_smem;
    GRU_STEP_BWD = gru_step_bwd_f32(RecBwdParams) in Gru, big_smem;
    GRU_SEQ_FWD_ENS = gru_seq_fwd_ens_f32(RecFwdEnsParams) in Gru, big_smem;
    GRU_SEQ_BWD_ENS = gru_seq_bwd_ens_f32(RecBwdEnsParams) in Gru, big_smem;
    LSTM_SEQ_FWD = lstm_seq_fwd_f32(RecFwdParams) in Lstm, big_smem;
    LSTM_STEP_FWD = lstm_step_fwd_f32(RecFwdParams) in Lstm, big_smem;
    LSTM_SEQ_BWD = lstm_seq_bwd_f32(RecBwdParams) in Lstm, big_smem;
    LSTM_STEP_BWD = lstm_step_bwd_f32(RecBwdParams) in Lstm, big_smem;
    LSTM_SEQ_FWD_ENS = lstm_seq_fwd_ens_f32(RecFwdEnsParams) in Lstm, big_smem;
    LSTM_SEQ_BWD_ENS = lstm_seq_bwd_ens_f32(RecBwdEnsParams) in Lstm, big_smem;
    RNN_SEQ_FWD_BF16 = rnn_seq_fwd_bf16(RecFwdParams) in Rnn, big_smem;
    RNN_STEP_FWD_BF16 = rnn_step_fwd_bf16(RecFwdParams) in Rnn, big_smem;
    RNN_SEQ_BWD_BF16 = rnn_seq_bwd_bf16(RecBwdParams) in Rnn, big_smem;
    RNN_STEP_BWD_BF16 = rnn_step_bwd_bf16(RecBwdParams) in Rnn, big_smem;
    RNN_SEQ_FWD_F16 = rnn_seq_fwd_f16(RecFwdParams) in Rnn, big_smem;
    RNN_STEP_FWD_F16 = rnn_step_fwd_f16(RecFwdParams) in Rnn, big_smem;
    RNN_SEQ_BWD_F16 = rnn_seq_bwd_f16(RecBwdParams) in Rnn, big_smem;
    RNN_STEP_BWD_F16 = rnn_step_bwd_f16(RecBwdParams) in Rnn, big_smem;
    GRU_SEQ_FWD_BF16 = gru_seq_fwd_bf16(RecFwdParams) in Gru, big_smem;
    GRU_STEP_FWD_BF16 = gru_step_fwd_bf16(RecFwdParams) in Gru, big_smem;
    GRU_SEQ_BWD_BF16 = gru_seq_bwd_bf16(RecBwdParams) in Gru, big_smem;
    GRU_STEP_BWD_BF16 = gru_step_bwd_bf16(RecBwdParams) in Gru, big_smem;
    GRU_SEQ_FWD_F16 = gru_seq_fwd_f16(RecFwdParams) in Gru, big_smem;
    GRU_STEP_FWD_F16 = gru_step_fwd_f16(RecFwdParams) in Gru, big_smem;
    GRU_SEQ_BWD_F16 = gru_seq_bwd_f16(RecBwdParams) in Gru, big_smem;
    GRU_STEP_BWD_F16 = gru_step_bwd_f16(RecBwdParams) in Gru, big_smem;
    LSTM_SEQ_FWD_BF16 = lstm_seq_fwd_bf16(RecFwdParams) in Lstm, big_smem;
    LSTM_STEP_FWD_BF16 = lstm_step_fwd_bf16(RecFwdParams) in Lstm, big_smem;
    LSTM_SEQ_BWD_BF16 = lstm_seq_bwd_bf16(RecBwdParams) in Lstm, big_smem;
    LSTM_STEP_BWD_BF16 = lstm_step_bwd_bf16(RecBwdParams) in Lstm, big_smem;
    LSTM_SEQ_FWD_F16 = lstm_seq_fwd_f16(RecFwdParams) in Lstm, big_smem;
    LSTM_STEP_FWD_F16 = lstm_step_fwd_f16(RecFwdParams) in Lstm, big_smem;
    LSTM_SEQ_BWD_F16 = lstm_seq_bwd_f16(RecBwdParams) in Lstm, big_smem;
    LSTM_STEP_BWD_F16 = lstm_step_bwd_f16(RecBwdParams) in Lstm, big_smem;
    ADAM_UPDATE = adam_update_f32(AdamParams) in Small;
    COL_SUM = col_sum_f32(ColSumParams) in Small;
    TRANSPOSE = transpose_f32(TransposeParams) in Small;
    SPEED = speed_f32(SpeedParams) in Small;
    SUB = sub_f32(SubParams) in Small;
    REPEAT_ROWS = repeat_rows_f32(RepeatRowsParams) in Small;
    ONE_HOT = one_hot_f32(OneHotParams) in Small;
    FILL = fill_f32(FillParams) in Small;
    ROUND_RECURRENT_BF16 = round_recurrent_bf16(RoundParams) in Small;
    ROUND_RECURRENT_F16 = round_recurrent_f16(RoundParams) in Small;
    RNN_SLOWPOINTS = rnn_slowpoints_f32(SlowPointsParams) in Slowpoints, big_smem;
    GRU_SLOWPOINTS = gru_slowpoints_f32(SlowPointsParams) in Slowpoints, big_smem;
    LSTM_SLOWPOINTS = lstm_slowpoints_f32(SlowPointsParams) in Slowpoints, big_smem;
    RNN_SLOWPOINTS_NARROW = rnn_slowpoints_narrow_f32(SlowPointsParams) in Slowpoints, big_smem;
    GRU_SLOWPOINTS_NARROW = gru_slowpoints_narrow_f32(SlowPointsParams) in Slowpoints, big_smem;
    LSTM_SLOWPOINTS_NARROW = lstm_slowpoints_narrow_f32(SlowPointsParams) in Slowpoints, big_smem;
    SLOWPOINTS_PACK = slowpoints_pack_f32(PackParams) in Slowpoints;
    SLOWPOINTS_COMPACT = slowpoints_compact_f32(CompactParams) in Slowpoints;
    AXPY = axpy_f32(AxpyParams) in Small;
    CLIP_NORM = clip_norm_f32(ClipAdamParams) in Small;
    CLIP_ADAM = clip_adam_f32(ClipAdamParams) in Small;
    CLIP_NORM_ENS = clip_norm_ens_f32(ClipAdamEnsParams) in Small;
    CLIP_ADAM_ENS = clip_adam_ens_f32(ClipAdamEnsParams) in Small;
    READOUT_CE_ROWS = readout_ce_rows_f32(ReadoutParams) in Readout;
    TASK_BATCH = task_batch_f32(TaskParams) in Task;
    TASK_DELAY = task_delay_f32(TaskParams) in Task;
    TASK_CHUNK = task_chunk_f32(TaskParams) in Task;
    READOUT_ARGMAX = readout_argmax_f32(ArgmaxParams) in Readout;
}

/// The recurrence entry points of one cell family in one weight storage type
/// (kernels/common.cuh); the ensemble's one-launch recurrence exists in f32 only (`None` in
/// bf16 / f16, where an ensemble runs its members one by one).
pub(crate) struct CellKernels {
    pub seq_fwd: Kernel<RecFwdParams>,
    pub step_fwd: Kernel<RecFwdParams>,
    pub seq_bwd: Kernel<RecBwdParams>,
    pub step_bwd: Kernel<RecBwdParams>,
    pub seq_fwd_ens: Option<Kernel<RecFwdEnsParams>>,
    pub seq_bwd_ens: Option<Kernel<RecBwdEnsParams>>,
}

pub(crate) const RNN: CellKernels = CellKernels {
    seq_fwd: RNN_SEQ_FWD,
    step_fwd: RNN_STEP_FWD,
    seq_bwd: RNN_SEQ_BWD,
    step_bwd: RNN_STEP_BWD,
    seq_fwd_ens: Some(RNN_SEQ_FWD_ENS),
    seq_bwd_ens: Some(RNN_SEQ_BWD_ENS),
};
pub(crate) const RNN_BF16: CellKernels = CellKernels {
    seq_fwd: RNN_SEQ_FWD_BF16,
    step_fwd: RNN_STEP_FWD_BF16,
    seq_bwd: RNN_SEQ_BWD_BF16,
    step_bwd: RNN_STEP_BWD_BF16,
    seq_fwd_ens: None,
    seq_bwd_ens: None,
};
pub(crate) const RNN_F16: CellKernels = CellKernels {
    seq_fwd: RNN_SEQ_FWD_F16,
    step_fwd: RNN_STEP_FWD_F16,
    seq_bwd: RNN_SEQ_BWD_F16,
    step_bwd: RNN_STEP_BWD_F16,
    seq_fwd_ens: None,
    seq_bwd_ens: None,
};
pub(crate) const GRU: CellKernels = CellKernels {
    seq_fwd: GRU_SEQ_FWD,
    step_fwd: GRU_STEP_FWD,
    seq_bwd: GRU_SEQ_BWD,
    step_bwd: GRU_STEP_BWD,
    seq_fwd_ens: Some(GRU_SEQ_FWD_ENS),
    seq_bwd_ens: Some(GRU_SEQ_BWD_ENS),
};
pub(crate) const GRU_BF16: CellKernels = CellKernels {
    seq_fwd: GRU_SEQ_FWD_BF16,
    step_fwd: GRU_STEP_FWD_BF16,
    seq_bwd: GRU_SEQ_BWD_BF16,
    step_bwd: GRU_STEP_BWD_BF16,
    seq_fwd_ens: None,
    seq_bwd_ens: None,
};
pub(crate) const GRU_F16: CellKernels = CellKernels {
    seq_fwd: GRU_SEQ_FWD_F16,
    step_fwd: GRU_STEP_FWD_F16,
    seq_bwd: GRU_SEQ_BWD_F16,
    step_bwd: GRU_STEP_BWD_F16,
    seq_fwd_ens: None,
    seq_bwd_ens: None,
};
pub(crate) const LSTM: CellKernels = CellKernels {
    seq_fwd: LSTM_SEQ_FWD,
    step_fwd: LSTM_STEP_FWD,
    seq_bwd: LSTM_SEQ_BWD,
    step_bwd: LSTM_STEP_BWD,
    seq_fwd_ens: Some(LSTM_SEQ_FWD_ENS),
    seq_bwd_ens: Some(LSTM_SEQ_BWD_ENS),
};
pub(crate) const LSTM_BF16: CellKernels = CellKernels {
    seq_fwd: LSTM_SEQ_FWD_BF16,
    step_fwd: LSTM_STEP_FWD_BF16,
    seq_bwd: LSTM_SEQ_BWD_BF16,
    step_bwd: LSTM_STEP_BWD_BF16,
    seq_fwd_ens: None,
    seq_bwd_ens: None,
};
pub(crate) const LSTM_F16: CellKernels = CellKernels {
    seq_fwd: LSTM_SEQ_FWD_F16,
    step_fwd: LSTM_STEP_FWD_F16,
    seq_bwd: LSTM_SEQ_BWD_F16,
    step_bwd: LSTM_STEP_BWD_F16,
    seq_fwd_ens: None,
    seq_bwd_ens: None,
};

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "sim")]
    use std::mem::{offset_of, size_of};

    /// `(struct, field, offset, size)` of every parameter struct, Rust side.
    #[cfg(feature = "sim")]
    fn rust_layouts() -> Vec<(&'static str, &'static str, usize, usize)> {
        macro_rules! fields {
            ($v:ident, $cname:literal, $t:ty, $($f:ident : $ft:ty => $cf:literal),*) => {
                $( $v.push(($cname, $cf, offset_of!($t, $f), size_of::<$ft>())); )*
                $v.push(($cname, "sizeof", size_of::<$t>(), 0));
            };
        }
        let mut v = Vec::new();
        fields!(v, "MrRecFwdParams", RecFwdParams,
            a: FwdArgs => "a", tile: TileArgs => "tile", t: i32 => "t");
        fields!(v, "mr::FwdArgs", FwdArgs,
            a: DevPtr => "A", w_hh: DevPtr => "w_hh", b_ih: DevPtr => "b_ih",
            b_hh: DevPtr => "b_hh", s0: DevPtr => "s0", h_seq: DevPtr => "h_seq",
            gates: DevPtr => "gates", c_seq: DevPtr => "c_seq", s_final: DevPtr => "s_final",
            t: i32 => "T", b: i32 => "B", h: i32 => "H");
        fields!(v, "mr::BwdArgs", BwdArgs,
            w_t: DevPtr => "w_t", h_seq: DevPtr => "h_seq", gates: DevPtr => "gates",
            c_seq: DevPtr => "c_seq", s0: DevPtr => "s0", dh_seq: DevPtr => "dh_seq",
            d: DevPtr => "D", da: DevPtr => "dA", du: DevPtr => "dU", ds0: DevPtr => "ds0",
            t: i32 => "T", b: i32 => "B", h: i32 => "H", has_dh: i32 => "has_dh");
        fields!(v, "mr::TileArgs", TileArgs,
            jt: i32 => "jt", bt: i32 => "bt", kc: i32 => "kc", ks: i32 => "ks");
        fields!(v, "MrRecBwdParams", RecBwdParams,
            a: BwdArgs => "a", tile: TileArgs => "tile", t: i32 => "t");
        fields!(v, "MrRecFwdEnsParams", RecFwdEnsParams,
            a: DevPtr => "a", tile: TileArgs => "tile", members: i32 => "members",
            blocks_per_member: i32 => "blocks_per_member");
        fields!(v, "MrRecBwdEnsParams", RecBwdEnsParams,
            a: DevPtr => "a", tile: TileArgs => "tile", members: i32 => "members",
            blocks_per_member: i32 => "blocks_per_member");
        fields!(v, "MrAdamParams", AdamParams,
            p: DevPtr => "p", g: DevPtr => "g", m: DevPtr => "m", v: DevPtr => "v",
            n: i64 => "n", beta1: f32 => "beta1", beta2: f32 => "beta2",
            step_size: f32 => "step_size", bc2_sqrt: f32 => "bc2_sqrt", eps: f32 => "eps");
        fields!(v, "MrColSumParams", ColSumParams,
            m: DevPtr => "M", out: DevPtr => "out", r: i64 => "R", c: i32 => "C");
        fields!(v, "MrTransposeParams", TransposeParams,
            inp: DevPtr => "in", out: DevPtr => "out", r: i32 => "R", c: i32 => "C");
        fields!(v, "MrSpeedParams", SpeedParams,
            f: DevPtr => "f", s: DevPtr => "s", speed: DevPtr => "speed",
            twice_e: DevPtr => "twice_e", n: i32 => "N", s_len: i32 => "S");
        fields!(v, "MrSubParams", SubParams,
            out: DevPtr => "out", a: DevPtr => "a", b: DevPtr => "b", n: i64 => "n");
        fields!(v, "MrRepeatRowsParams", RepeatRowsParams,
            inp: DevPtr => "in", out: DevPtr => "out", n: i32 => "N", s: i32 => "S",
            c: i32 => "C");
        fields!(v, "MrOneHotParams", OneHotParams,
            out: DevPtr => "out", n: i32 => "N", s: i32 => "S");
        fields!(v, "MrRoundParams", RoundParams,
            inp: DevPtr => "in", out: DevPtr => "out", out_t: DevPtr => "out_t",
            out_f32: DevPtr => "out_f32", first_overflow: DevPtr => "first_overflow",
            r: i32 => "R", c: i32 => "C");
        fields!(v, "MrFillParams", FillParams,
            out: DevPtr => "out", v: f32 => "v", n: i64 => "n");
        fields!(v, "MrSpMember", SpMember,
            wf: DevPtr => "wf", wb: DevPtr => "wb", a_bar: DevPtr => "a_bar",
            b_hh: DevPtr => "b_hh", states: DevPtr => "states", m: DevPtr => "m",
            v: DevPtr => "v", status: DevPtr => "status", idx: DevPtr => "idx");
        fields!(v, "MrSlowPointsParams", SlowPointsParams,
            members: DevPtr => "members", tiles: DevPtr => "tiles",
            h: i32 => "H", iters: i32 => "iters", lr: f32 => "lr",
            beta1: f32 => "beta1", beta2: f32 => "beta2", eps: f32 => "eps",
            tol: f32 => "tol", stall_rel: f32 => "stall_rel",
            max_iters: u32 => "max_iters", stall_window: u32 => "stall_window");
        fields!(v, "MrPackParams", PackParams,
            w_hh: DevPtr => "w_hh", wf: DevPtr => "wf", wb: DevPtr => "wb",
            h: i32 => "H", gh: i32 => "GH");
        fields!(v, "MrCompactParams", CompactParams,
            status: DevPtr => "status", k: i32 => "K", with_max_iters: i32 => "with_max_iters",
            idx: DevPtr => "idx", count: DevPtr => "count");
        fields!(v, "MrReadoutParams", ReadoutParams,
            h: DevPtr => "h", readout: DevPtr => "readout", targets: DevPtr => "targets",
            weights: DevPtr => "weights", g: DevPtr => "g", dh: DevPtr => "dh",
            row_stats: DevPtr => "row_stats", rows: i32 => "rows", h_len: i32 => "H",
            c: i32 => "C", inv_rows: f32 => "inv_rows");
        fields!(v, "MrAxpyParams", AxpyParams,
            y: DevPtr => "y", x: DevPtr => "x", n: i64 => "n", alpha: f32 => "alpha");
        fields!(v, "mr::AdamGroupArgs", AdamGroupArgs,
            p: DevPtr => "p", g: DevPtr => "g", m: DevPtr => "m", v: DevPtr => "v",
            n: i64 => "n");
        fields!(v, "MrClipAdamParams", ClipAdamParams,
            g0: AdamGroupArgs => "g0", g1: AdamGroupArgs => "g1", g2: AdamGroupArgs => "g2",
            g3: AdamGroupArgs => "g3", clip: DevPtr => "clip", loss: DevPtr => "loss",
            halted: DevPtr => "halted", max_loss: f32 => "max_loss",
            has_guard: i32 => "has_guard", max_norm: f32 => "max_norm",
            has_max: i32 => "has_max", beta1: f32 => "beta1", beta2: f32 => "beta2",
            step_size: f32 => "step_size", bc2_sqrt: f32 => "bc2_sqrt", eps: f32 => "eps");
        fields!(v, "MrClipAdamEnsParams", ClipAdamEnsParams,
            m: [ClipAdamParams; CLIP_ENS_MAX] => "m", members: i32 => "members",
            blocks_per_member: i32 => "blocks_per_member");
        fields!(v, "MrTaskParams", TaskParams,
            x: DevPtr => "x", targets: DevPtr => "targets", weights: DevPtr => "weights",
            images: DevPtr => "images", offsets: DevPtr => "offsets", k0: u32 => "k0",
            k1: u32 => "k1", t: i32 => "T", b: i32 => "B", p: i32 => "P",
            vocab: i32 => "vocab", delta_min: i32 => "delta_min", mean: f32 => "mean",
            std: f32 => "std_", t0: i32 => "t0", t_read: u32 => "t_read",
            t_report: u32 => "t_report");
        fields!(v, "MrArgmaxParams", ArgmaxParams,
            h: DevPtr => "h", readout: DevPtr => "readout", out: DevPtr => "out",
            rows: i32 => "rows", h_len: i32 => "H", c: i32 => "C");
        v
    }

    #[test]
    fn every_kernel_is_listed_once() {
        let mut names: Vec<&str> = ALL.iter().map(|k| k.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len(), "a kernel is listed twice");
        for k in ALL {
            let (_, src) = k.module.ptx();
            assert!(
                src.contains(&format!(".entry {}(", k.name)),
                "{} is not an entry point of {:?}'s PTX",
                k.name,
                k.module
            );
        }
    }

    /// The C side's `offsetof` table (compiled from kernels/params.cuh by the simulated
    /// device's build) against the Rust structs.
    #[cfg(feature = "sim")]
    #[test]
    fn param_layouts_match_the_kernels() {
        let c = crate::device::sim::param_layout_table();
        let rust = rust_layouts();
        for (s, f, off, size) in &rust {
            let Some(&(_, _, coff, csize)) = c.iter().find(|(cs, cf, _, _)| cs == s && cf == f)
            else {
                panic!("{s}.{f}: no such field in kernels/params.cuh's layout table");
            };
            assert_eq!(*off, coff, "{s}.{f}: offset {off} in Rust, {coff} in C");
            if *f != "sizeof" && *size > 0 {
                assert_eq!(*size, csize, "{s}.{f}: size {size} in Rust, {csize} in C");
            }
        }
        for (s, f, _, _) in &c {
            assert!(
                rust.iter().any(|(rs, rf, _, _)| rs == s && rf == f),
                "{s}.{f} is in kernels/params.cuh but not mirrored in kernels.rs"
            );
        }
    }
}
