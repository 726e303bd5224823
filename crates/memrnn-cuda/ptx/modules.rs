// Written by `cargo xtask ptx` from kernels/*.cu (checked by `cargo xtask ptx --check`):
// do not edit. Included by crates/memrnn-cuda/src/ptx.rs.

/// `kernels/adam.cu` (sm_90).
pub const ADAM: &str = include_str!("adam.ptx");
/// `kernels/gru.cu` (sm_90).
pub const GRU: &str = include_str!("gru.ptx");
/// `kernels/lstm.cu` (sm_90).
pub const LSTM: &str = include_str!("lstm.ptx");
/// `kernels/rnn.cu` (sm_90).
pub const RNN: &str = include_str!("rnn.ptx");
/// `kernels/slowpoints.cu` (sm_90).
pub const SLOWPOINTS: &str = include_str!("slowpoints.ptx");

/// Every embedded module: (file name, PTX).
pub const ALL: [(&str, &str); 5] = [
    ("adam.ptx", ADAM),
    ("gru.ptx", GRU),
    ("lstm.ptx", LSTM),
    ("rnn.ptx", RNN),
    ("slowpoints.ptx", SLOWPOINTS),
];

/// The PTX module a kernel lives in (one per `kernels/*.cu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Module {
    Adam,
    Gru,
    Lstm,
    Rnn,
    Slowpoints,
}

impl Module {
    pub(crate) const ALL: [Module; 5] = [
        Module::Adam,
        Module::Gru,
        Module::Lstm,
        Module::Rnn,
        Module::Slowpoints,
    ];

    /// `(file name, PTX)`.
    pub(crate) fn ptx(self) -> (&'static str, &'static str) {
        match self {
            Module::Adam => ("adam.ptx", ADAM),
            Module::Gru => ("gru.ptx", GRU),
            Module::Lstm => ("lstm.ptx", LSTM),
            Module::Rnn => ("rnn.ptx", RNN),
            Module::Slowpoints => ("slowpoints.ptx", SLOWPOINTS),
        }
    }
}
