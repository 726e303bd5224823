// Written by `cargo xtask ptx` from kernels/*.cu (checked by `cargo xtask ptx --check`):
// do not edit. Included by crates/memrnn-cuda/src/ptx.rs.

/// `kernels/gru.cu` (sm_90).
pub const GRU: &str = include_str!("gru.ptx");
/// `kernels/lstm.cu` (sm_90).
pub const LSTM: &str = include_str!("lstm.ptx");
/// `kernels/rnn.cu` (sm_90).
pub const RNN: &str = include_str!("rnn.ptx");
/// `kernels/slowpoints.cu` (sm_90).
pub const SLOWPOINTS: &str = include_str!("slowpoints.ptx");
/// `kernels/small.cu` (sm_90).
pub const SMALL: &str = include_str!("small.ptx");

/// Every embedded module: (file name, PTX).
pub const ALL: [(&str, &str); 5] = [
    ("gru.ptx", GRU),
    ("lstm.ptx", LSTM),
    ("rnn.ptx", RNN),
    ("slowpoints.ptx", SLOWPOINTS),
    ("small.ptx", SMALL),
];

/// The PTX module a kernel lives in (one per `kernels/*.cu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Module {
    Gru,
    Lstm,
    Rnn,
    Slowpoints,
    Small,
}

impl Module {
    pub(crate) const ALL: [Module; 5] = [
        Module::Gru,
        Module::Lstm,
        Module::Rnn,
        Module::Slowpoints,
        Module::Small,
    ];

    /// `(file name, PTX)`.
    pub(crate) fn ptx(self) -> (&'static str, &'static str) {
        match self {
            Module::Gru => ("gru.ptx", GRU),
            Module::Lstm => ("lstm.ptx", LSTM),
            Module::Rnn => ("rnn.ptx", RNN),
            Module::Slowpoints => ("slowpoints.ptx", SLOWPOINTS),
            Module::Small => ("small.ptx", SMALL),
        }
    }
}
