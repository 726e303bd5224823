//! A recurrent layer's parameters with its readout, and PyTorch's default initialisation.

use crate::cell::{CellDims, ParamLayout};
use crate::error::{check_finite, check_len, Error, Result};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The linear readout `y = W_out h + b_out` (`torch.nn.Linear(H, C)`).
#[derive(Clone, Debug, PartialEq)]
pub struct Readout {
    pub classes: usize,
    pub hidden: usize,
    /// `W_out [C, H]`, row-major.
    pub weight: Vec<f32>,
    /// `b_out [C]`.
    pub bias: Vec<f32>,
}

impl Readout {
    /// PyTorch's default `nn.Linear` initialisation, `U(−1/√H, 1/√H)`, from `seed`.
    pub fn init(classes: usize, hidden: usize, seed: u64) -> Result<Self> {
        if classes == 0 || hidden == 0 {
            return Err(Error::Dimension(format!(
                "a readout needs at least one class and one hidden unit, got {classes} × {hidden}"
            )));
        }
        let k = 1.0 / (hidden as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-k..k) as f32).collect() };
        let weight = draw(classes * hidden);
        let bias = draw(classes);
        Ok(Readout {
            classes,
            hidden,
            weight,
            bias,
        })
    }

    pub fn validate(&self) -> Result<()> {
        check_len(
            "readout weight",
            self.classes * self.hidden,
            self.weight.len(),
            || format!("[C={}, H={}]", self.classes, self.hidden),
        )?;
        check_len("readout bias", self.classes, self.bias.len(), || {
            format!("[C={}]", self.classes)
        })?;
        check_finite("readout weight", &self.weight)?;
        check_finite("readout bias", &self.bias)
    }
}

/// One recurrent layer (flat parameters in [`ParamLayout`] order) and an optional readout:
/// what a checkpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub cell: CellDims,
    pub params: Vec<f32>,
    pub readout: Option<Readout>,
}

impl Model {
    /// PyTorch's default initialisation of `nn.RNN/GRU/LSTM`: every weight and bias drawn
    /// from `U(−1/√H, 1/√H)`, seeded.
    pub fn init(cell: CellDims, seed: u64) -> Self {
        Model {
            cell,
            params: init_params(&cell, seed),
            readout: None,
        }
    }

    pub fn layout(&self) -> ParamLayout {
        self.cell.layout()
    }

    /// Checks every length against the cell and that every value is finite.
    pub fn validate(&self) -> Result<()> {
        self.layout().check("parameters", self.params.len())?;
        check_finite("recurrent parameters", &self.params)?;
        if let Some(r) = &self.readout {
            r.validate()?;
            if r.hidden != self.cell.hidden {
                return Err(Error::InvalidArgument(format!(
                    "the readout reads {} hidden units but the cell has {}",
                    r.hidden, self.cell.hidden
                )));
            }
        }
        Ok(())
    }
}

/// Flat parameters for `cell`, PyTorch's default initialisation, from `seed`.
pub fn init_params(cell: &CellDims, seed: u64) -> Vec<f32> {
    let k = 1.0 / (cell.hidden as f64).sqrt();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..cell.layout().len())
        .map(|_| rng.random_range(-k..k) as f32)
        .collect()
}
