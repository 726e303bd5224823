// Written by `cargo xtask ptx` from kernels/*.cu (checked by `cargo xtask ptx --check`):
// do not edit. Included by crates/memrnn-cuda/src/ptx.rs.

/// `kernels/gru.cu` (sm_90).
pub const GRU: &str = include_str!("gru.ptx");
/// `kernels/lstm.cu` (sm_90).
pub const LSTM: &str = include_str!("lstm.ptx");
/// `kernels/readout.cu` (sm_90).
pub const READOUT: &str = include_str!("readout.ptx");
/// `kernels/rnn.cu` (sm_90).
pub const RNN: &str = include_str!("rnn.ptx");
/// `kernels/slowpoints.cu` (sm_90).
pub const SLOWPOINTS: &str = include_str!("slowpoints.ptx");
/// `kernels/small.cu` (sm_90).
pub const SMALL: &str = include_str!("small.ptx");
/// `kernels/task.cu` (sm_90).
pub const TASK: &str = include_str!("task.ptx");

/// Every embedded module: (file name, PTX).
pub const ALL: [(&str, &str); 7] = [
    ("gru.ptx", GRU),
    ("lstm.ptx", LSTM),
    ("readout.ptx", READOUT),
    ("rnn.ptx", RNN),
    ("slowpoints.ptx", SLOWPOINTS),
    ("small.ptx", SMALL),
    ("task.ptx", TASK),
];

/// The PTX module a kernel lives in (one per `kernels/*.cu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Module {
    Gru,
    Lstm,
    Readout,
    Rnn,
    Slowpoints,
    Small,
    Task,
}

impl Module {
    pub(crate) const ALL: [Module; 7] = [
        Module::Gru,
        Module::Lstm,
        Module::Readout,
        Module::Rnn,
        Module::Slowpoints,
        Module::Small,
        Module::Task,
    ];

    /// `(file name, PTX)`.
    pub(crate) fn ptx(self) -> (&'static str, &'static str) {
        match self {
            Module::Gru => ("gru.ptx", GRU),
            Module::Lstm => ("lstm.ptx", LSTM),
            Module::Readout => ("readout.ptx", READOUT),
            Module::Rnn => ("rnn.ptx", RNN),
            Module::Slowpoints => ("slowpoints.ptx", SLOWPOINTS),
            Module::Small => ("small.ptx", SMALL),
            Module::Task => ("task.ptx", TASK),
        }
    }
}
