//! Cell kinds and their dimensions (MATH.md §1–§2).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The recurrent cells memrnn implements, with PyTorch's equations and gate order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)` (`torch.nn.RNN`, tanh nonlinearity).
    Rnn,
    /// Gated recurrent unit, gates `r, z, n`, reset applied after the recurrent product.
    Gru,
    /// Long short-term memory, gates `i, f, g, o`; the state is `(h, c)`.
    Lstm,
}

impl CellKind {
    pub const ALL: [CellKind; 3] = [CellKind::Rnn, CellKind::Gru, CellKind::Lstm];

    /// `G`: the number of gate blocks stacked in `W_ih` and `W_hh`.
    pub const fn gates(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }

    /// How many `H`-sized parts the state has: 1 (`h`), or 2 for the LSTM (`h`, `c`).
    pub const fn state_parts(self) -> usize {
        match self {
            CellKind::Lstm => 2,
            _ => 1,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            CellKind::Rnn => "rnn",
            CellKind::Gru => "gru",
            CellKind::Lstm => "lstm",
        }
    }

    /// The kind whose gate count is `g` (how a PyTorch state dict without metadata is read).
    pub fn from_gates(g: usize) -> Option<CellKind> {
        CellKind::ALL.into_iter().find(|k| k.gates() == g)
    }
}

impl fmt::Display for CellKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CellKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rnn" | "tanh" => Ok(CellKind::Rnn),
            "gru" => Ok(CellKind::Gru),
            "lstm" => Ok(CellKind::Lstm),
            other => Err(Error::InvalidArgument(format!(
                "unknown cell kind {other:?}: expected one of rnn, gru, lstm"
            ))),
        }
    }
}

/// Largest input or hidden size accepted: far beyond anything useful, small enough that
/// every product of sizes below fits in `usize` with room to spare.
pub const MAX_DIM: usize = 1 << 20;

/// A cell's kind and sizes: everything needed to lay out its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CellDims {
    pub kind: CellKind,
    /// `I`: the input size.
    pub input: usize,
    /// `H`: the hidden size.
    pub hidden: usize,
}

impl CellDims {
    /// Validated dimensions: both sizes in `1..=MAX_DIM`.
    pub fn new(kind: CellKind, input: usize, hidden: usize) -> Result<Self> {
        for (name, v) in [("input size", input), ("hidden size", hidden)] {
            if v == 0 || v > MAX_DIM {
                return Err(Error::Dimension(format!(
                    "{name} is {v}: it must be between 1 and {MAX_DIM}"
                )));
            }
        }
        Ok(CellDims {
            kind,
            input,
            hidden,
        })
    }

    pub const fn gates(&self) -> usize {
        self.kind.gates()
    }

    /// `G·H`: the rows of `W_ih` and `W_hh`.
    pub const fn gate_rows(&self) -> usize {
        self.kind.gates() * self.hidden
    }

    /// `S`: the length of one state row (`H`, or `2H` for `(h, c)`).
    pub const fn state_size(&self) -> usize {
        self.kind.state_parts() * self.hidden
    }

    pub fn layout(&self) -> ParamLayout {
        ParamLayout::new(*self)
    }

    /// Fails unless `self == other`, naming both.
    pub fn expect_same(&self, other: &CellDims, what: &str) -> Result<()> {
        if self == other {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "{what}: expected a {} cell with input {} and hidden {}, got a {} cell with input {} and hidden {}",
                self.kind, self.input, self.hidden, other.kind, other.input, other.hidden
            )))
        }
    }
}

/// One of the four parameter blocks of a layer, named as PyTorch names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamBlock {
    WeightIh,
    WeightHh,
    BiasIh,
    BiasHh,
}

impl ParamBlock {
    pub const ALL: [ParamBlock; 4] = [
        ParamBlock::WeightIh,
        ParamBlock::WeightHh,
        ParamBlock::BiasIh,
        ParamBlock::BiasHh,
    ];

    /// The `torch.nn.RNN/GRU/LSTM` state-dict name of this block (layer 0).
    pub const fn torch_name(self) -> &'static str {
        match self {
            ParamBlock::WeightIh => "weight_ih_l0",
            ParamBlock::WeightHh => "weight_hh_l0",
            ParamBlock::BiasIh => "bias_ih_l0",
            ParamBlock::BiasHh => "bias_hh_l0",
        }
    }
}

/// Where each block lives in the flat parameter vector: `W_ih [G·H, I]`, `W_hh [G·H, H]`,
/// `b_ih [G·H]`, `b_hh [G·H]`, in that order, each row-major, gate blocks stacked in
/// PyTorch's order. Gradients and optimiser state use the same layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    pub dims: CellDims,
}

impl ParamLayout {
    pub const fn new(dims: CellDims) -> Self {
        ParamLayout { dims }
    }

    /// The block's shape as PyTorch reports it.
    pub fn shape(&self, block: ParamBlock) -> Vec<usize> {
        let gh = self.dims.gate_rows();
        match block {
            ParamBlock::WeightIh => vec![gh, self.dims.input],
            ParamBlock::WeightHh => vec![gh, self.dims.hidden],
            ParamBlock::BiasIh | ParamBlock::BiasHh => vec![gh],
        }
    }

    pub fn range(&self, block: ParamBlock) -> std::ops::Range<usize> {
        let gh = self.dims.gate_rows();
        let w_ih = gh * self.dims.input;
        let w_hh = gh * self.dims.hidden;
        let start = match block {
            ParamBlock::WeightIh => 0,
            ParamBlock::WeightHh => w_ih,
            ParamBlock::BiasIh => w_ih + w_hh,
            ParamBlock::BiasHh => w_ih + w_hh + gh,
        };
        let len: usize = self.shape(block).iter().product();
        start..start + len
    }

    /// Total number of parameters of the layer.
    pub fn len(&self) -> usize {
        self.range(ParamBlock::BiasHh).end
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Splits a flat parameter slice into its four blocks.
    pub fn split<'a, T>(&self, flat: &'a [T]) -> ParamView<'a, T> {
        let g = |b| &flat[self.range(b)];
        ParamView {
            w_ih: g(ParamBlock::WeightIh),
            w_hh: g(ParamBlock::WeightHh),
            b_ih: g(ParamBlock::BiasIh),
            b_hh: g(ParamBlock::BiasHh),
        }
    }

    /// Splits a flat mutable slice (a gradient, say) into its four blocks.
    pub fn split_mut<'a, T>(&self, flat: &'a mut [T]) -> ParamViewMut<'a, T> {
        let (w_ih, rest) = flat.split_at_mut(self.range(ParamBlock::WeightIh).len());
        let (w_hh, rest) = rest.split_at_mut(self.range(ParamBlock::WeightHh).len());
        let (b_ih, b_hh) = rest.split_at_mut(self.dims.gate_rows());
        ParamViewMut {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
        }
    }

    /// Fails with a shape error unless `len == self.len()`.
    pub fn check(&self, what: &str, len: usize) -> Result<()> {
        crate::error::check_len(what, self.len(), len, || {
            format!(
                "{} parameters of a {} cell with input {} and hidden {}",
                self.len(),
                self.dims.kind,
                self.dims.input,
                self.dims.hidden
            )
        })
    }
}

/// The four blocks of a flat parameter slice.
#[derive(Clone, Copy, Debug)]
pub struct ParamView<'a, T> {
    pub w_ih: &'a [T],
    pub w_hh: &'a [T],
    pub b_ih: &'a [T],
    pub b_hh: &'a [T],
}

/// The four blocks of a flat mutable parameter slice.
#[derive(Debug)]
pub struct ParamViewMut<'a, T> {
    pub w_ih: &'a mut [T],
    pub w_hh: &'a mut [T],
    pub b_ih: &'a mut [T],
    pub b_hh: &'a mut [T],
}

/// The extent of a batch of sequences: `T` steps of `B` rows. Sequences are stored
/// time-major, `[T, B, ·]`, as `torch.nn.GRU(batch_first=False)` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeqShape {
    pub steps: usize,
    pub batch: usize,
}

impl SeqShape {
    pub fn new(steps: usize, batch: usize) -> Result<Self> {
        if steps == 0 || batch == 0 {
            return Err(Error::Dimension(format!(
                "a sequence batch needs at least one step and one row, got {steps} steps of {batch} rows"
            )));
        }
        steps
            .checked_mul(batch)
            .filter(|&n| n <= (1usize << 40))
            .ok_or_else(|| {
                Error::Dimension(format!("{steps} steps × {batch} rows is too large"))
            })?;
        Ok(SeqShape { steps, batch })
    }

    /// `T·B`: the number of (step, row) pairs.
    pub const fn rows(&self) -> usize {
        self.steps * self.batch
    }

    /// Checks the lengths of the inputs of a sequence call: `x [T,B,I]` and the optional
    /// initial state `s0 [B,S]`.
    pub fn check_inputs(&self, cell: &CellDims, x_len: usize, s0_len: Option<usize>) -> Result<()> {
        crate::error::check_len("x", self.rows() * cell.input, x_len, || {
            format!("[T={}, B={}, I={}]", self.steps, self.batch, cell.input)
        })?;
        if let Some(len) = s0_len {
            crate::error::check_len("s0", self.batch * cell.state_size(), len, || {
                format!("[B={}, S={}]", self.batch, cell.state_size())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_pytorch_sizes() {
        let d = CellDims::new(CellKind::Gru, 5, 7).unwrap();
        let l = d.layout();
        assert_eq!(l.range(ParamBlock::WeightIh), 0..105);
        assert_eq!(l.range(ParamBlock::WeightHh), 105..252);
        assert_eq!(l.range(ParamBlock::BiasIh), 252..273);
        assert_eq!(l.range(ParamBlock::BiasHh), 273..294);
        assert_eq!(l.len(), 294);
        let flat: Vec<u32> = (0..294).collect();
        let v = l.split(&flat);
        assert_eq!(v.w_hh[0], 105);
        assert_eq!(v.b_hh.len(), 21);
    }

    #[test]
    fn zero_sizes_are_rejected() {
        assert!(CellDims::new(CellKind::Lstm, 0, 3).is_err());
        assert!(CellDims::new(CellKind::Lstm, 3, 0).is_err());
        assert!(SeqShape::new(0, 1).is_err());
        assert!(SeqShape::new(1, 0).is_err());
    }

    #[test]
    fn cell_kind_parses_and_counts() {
        assert_eq!("GRU".parse::<CellKind>().unwrap(), CellKind::Gru);
        assert!("transformer".parse::<CellKind>().is_err());
        for k in CellKind::ALL {
            assert_eq!(CellKind::from_gates(k.gates()), Some(k));
        }
    }
}
