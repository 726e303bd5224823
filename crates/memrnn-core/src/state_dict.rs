//! Named tensors in, a model out, the way PyTorch's `load_state_dict` does it: strictly
//! (every name present, nothing extra, every shape right, or an error) or not
//! (`strict=False`: what matches is loaded, and a [`LoadReport`] lists what was missing,
//! unexpected or mismatched).
//!
//! - [`StateDict`]: named tensors with their source dtype and the file's metadata, built
//!   in memory ([`StateDict::insert_f32`], [`StateDict::insert_f64`]) or read from
//!   safetensors ([`StateDict::read`], [`StateDict::from_bytes`]). Tensors of dtypes memrnn
//!   cannot hold (integers, booleans: a BatchNorm's `num_batches_tracked`, say) are kept
//!   by name, dtype and shape so that they can be reported, not loaded.
//! - [`Model::from_state_dict`] / [`ModelOf::from_state_dict`]: build a model whose sizes
//!   are read off `weight_hh_l0` and `weight_ih_l0`, in f32 or (for the reference) f64.
//! - [`Model::load_state_dict`] / [`ModelOf::load_state_dict`]: load into an existing
//!   model of known sizes; names that are missing keep their current values.
//! - [`load_state_dict_file`]: the file version of [`Model::from_state_dict`], returning a
//!   [`Checkpoint`] (model and metadata) with the report.
//!
//! ```
//! use memrnn_core::{CellDims, CellKind, Model, StateDict};
//!
//! // A PyTorch GRU(input_size=2, hidden_size=3, bias=False) state dict, plus a tensor
//! // of some other module.
//! let gru = Model::init(CellDims::new(CellKind::Gru, 2, 3)?, 7);
//! let v = gru.layout().split(&gru.params);
//! let mut sd = StateDict::new();
//! sd.insert_f32("weight_ih_l0", vec![9, 2], v.w_ih)?;
//! sd.insert_f32("weight_hh_l0", vec![9, 3], v.w_hh)?;
//! sd.insert_f32("encoder.weight", vec![2, 2], &[1.0, 0.0, 0.0, 1.0])?;
//!
//! // Strict (load_checkpoint's behaviour): refused, naming every problem.
//! let err = Model::from_state_dict(&sd, true).unwrap_err().to_string();
//! assert!(err.contains("encoder.weight") && err.contains("bias_ih_l0"), "{err}");
//!
//! // Not strict: loaded, missing biases are zero (as in a bias-free layer), and reported.
//! let (model, report) = Model::from_state_dict(&sd, false)?;
//! assert_eq!(model.cell, gru.cell);
//! assert_eq!(report.missing, ["bias_ih_l0", "bias_hh_l0"]);
//! assert_eq!(report.unexpected, ["encoder.weight"]);
//! assert!(report.mismatched.is_empty());
//! # Ok::<(), memrnn_core::Error>(())
//! ```

use crate::cell::{CellDims, CellKind, ParamBlock};
use crate::checkpoint::{Checkpoint, HostTensor, READOUT_BIAS, READOUT_WEIGHT};
use crate::error::{check_finite, Error, Result};
use crate::model::{Model, Readout};
use crate::real::{convert, Real};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The metadata key under which memrnn records the cell kind.
pub const CELL_METADATA_KEY: &str = "memrnn.cell";

/// The element type of a tensor as its source stored it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TensorDtype {
    F16,
    BF16,
    F32,
    F64,
    /// Any other safetensors dtype (`I64`, `BOOL`, `F8_E4M3`, …), by its safetensors name:
    /// kept so that it can be reported, never loaded.
    Other(String),
}

impl TensorDtype {
    /// Whether memrnn reads values of this dtype (the four float types).
    pub fn is_float(&self) -> bool {
        !matches!(self, TensorDtype::Other(_))
    }

    pub(crate) fn from_safetensors(d: Dtype) -> Self {
        match d {
            Dtype::F16 => TensorDtype::F16,
            Dtype::BF16 => TensorDtype::BF16,
            Dtype::F32 => TensorDtype::F32,
            Dtype::F64 => TensorDtype::F64,
            other => TensorDtype::Other(format!("{other:?}")),
        }
    }
}

impl fmt::Display for TensorDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorDtype::F16 => f.write_str("F16"),
            TensorDtype::BF16 => f.write_str("BF16"),
            TensorDtype::F32 => f.write_str("F32"),
            TensorDtype::F64 => f.write_str("F64"),
            TensorDtype::Other(s) => f.write_str(s),
        }
    }
}

/// Little-endian float bytes of dtype `d` widened to f64 (exact for every float dtype),
/// or `None` when `d` is not a float type.
pub(crate) fn widen(d: Dtype, raw: &[u8]) -> Option<Vec<f64>> {
    Some(match d {
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect(),
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks_exact(8) yields 8 bytes")))
            .collect(),
        _ => return None,
    })
}

/// One named entry of a [`StateDict`].
#[derive(Clone, Debug, PartialEq)]
pub struct StateEntry {
    /// The dtype the source stored.
    pub dtype: TensorDtype,
    pub shape: Vec<usize>,
    /// The values widened to f64, or `None` for a non-float dtype.
    pub values: Option<Vec<f64>>,
}

/// Named tensors and string metadata: a PyTorch state dict as memrnn sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    pub entries: BTreeMap<String, StateEntry>,
    pub metadata: BTreeMap<String, String>,
}

fn entry_from(dtype: TensorDtype, shape: Vec<usize>, values: Vec<f64>) -> Result<StateEntry> {
    let n: usize = shape.iter().product();
    if n != values.len() {
        return Err(Error::shape(
            "state dict tensor",
            n,
            values.len(),
            format!("shape {shape:?}"),
        ));
    }
    Ok(StateEntry {
        dtype,
        shape,
        values: Some(values),
    })
}

impl StateDict {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an f32 tensor; fails unless `data` holds `shape`'s product.
    pub fn insert_f32(&mut self, name: &str, shape: Vec<usize>, data: &[f32]) -> Result<()> {
        let e = entry_from(TensorDtype::F32, shape, convert(data))?;
        self.entries.insert(name.to_string(), e);
        Ok(())
    }

    /// Adds (or replaces) an f64 tensor; fails unless `data` holds `shape`'s product.
    pub fn insert_f64(&mut self, name: &str, shape: Vec<usize>, data: &[f64]) -> Result<()> {
        let e = entry_from(TensorDtype::F64, shape, data.to_vec())?;
        self.entries.insert(name.to_string(), e);
        Ok(())
    }

    /// A state dict of the tensors [`crate::checkpoint::read_tensors`] returns (their
    /// source dtype is not known there and is recorded as F64).
    pub fn from_tensors(
        tensors: BTreeMap<String, HostTensor>,
        metadata: BTreeMap<String, String>,
    ) -> Self {
        let entries = tensors
            .into_iter()
            .map(|(k, t)| {
                let e = StateEntry {
                    dtype: TensorDtype::F64,
                    shape: t.shape,
                    values: Some(t.data),
                };
                (k, e)
            })
            .collect();
        StateDict { entries, metadata }
    }

    /// Parses safetensors bytes. Every tensor is kept; non-float ones without values.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            format!(
                "not a valid safetensors file ({e}); was it truncated or written by another program?"
            )
        })?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let metadata = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut entries = BTreeMap::new();
        for (name, view) in st.tensors() {
            let e = StateEntry {
                dtype: TensorDtype::from_safetensors(view.dtype()),
                shape: view.shape().to_vec(),
                values: widen(view.dtype(), view.data()),
            };
            entries.insert(name, e);
        }
        Ok(StateDict { entries, metadata })
    }

    /// Reads a safetensors file (as `safetensors.torch.save_file` writes a state dict).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|reason| Error::Checkpoint {
            path: path.display().to_string(),
            reason,
        })
    }

    /// The tensor named `name` as a [`HostTensor`], when it is a float tensor.
    pub fn get(&self, name: &str) -> Option<HostTensor> {
        let e = self.entries.get(name)?;
        Some(HostTensor {
            shape: e.shape.clone(),
            data: e.values.clone()?,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A name the model expects whose tensor could not be loaded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub name: String,
    /// The shape the model needs.
    pub expected: Vec<usize>,
    /// The shape the state dict holds.
    pub found: Vec<usize>,
    /// The state dict's dtype (a mismatch by dtype when it is not a float type).
    pub dtype: TensorDtype,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dtype.is_float() {
            write!(
                f,
                "{} has shape {:?} but the model needs {:?}",
                self.name, self.found, self.expected
            )
        } else {
            write!(
                f,
                "{} has dtype {} (memrnn reads F16, BF16, F32, F64)",
                self.name, self.dtype
            )
        }
    }
}

/// What a load left out, as `load_state_dict(strict=False)` reports it (with shape and
/// dtype mismatches reported rather than raised).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Names the model expects that the state dict does not hold (in the model's order).
    pub missing: Vec<String>,
    /// Names the state dict holds that the model does not use (sorted).
    pub unexpected: Vec<String>,
    /// Expected names whose tensor has the wrong shape or a non-float dtype: not loaded.
    pub mismatched: Vec<Mismatch>,
}

impl LoadReport {
    /// True when everything the model expects was loaded and nothing else was given.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("every tensor matched");
        }
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing {:?}", self.missing));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("unexpected {:?}", self.unexpected));
        }
        for m in &self.mismatched {
            parts.push(m.to_string());
        }
        f.write_str(&parts.join("; "))
    }
}

/// [`Readout`] in any [`Real`] precision.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadoutOf<T> {
    pub classes: usize,
    pub hidden: usize,
    /// `W_out [C, H]`, row-major.
    pub weight: Vec<T>,
    /// `b_out [C]`.
    pub bias: Vec<T>,
}

/// [`Model`] in any [`Real`] precision: `ModelOf<f64>` holds f64 parameters for the
/// reference (`memrnn_cpu::reference` is generic over f32/f64), loaded exactly from f64
/// tensors or widened exactly from f32, f16 or bf16 ones.
///
/// ```
/// use memrnn_core::{CellDims, CellKind, Model, ModelOf, StateDict};
///
/// let m = Model::init(CellDims::new(CellKind::Rnn, 2, 3)?, 1);
/// // An f64 state dict (PyTorch's `model.double().state_dict()`):
/// let mut sd = StateDict::new();
/// for b in memrnn_core::ParamBlock::ALL {
///     let v: Vec<f64> = m.params[m.layout().range(b)].iter().map(|&x| x as f64 + 1e-12).collect();
///     sd.insert_f64(b.torch_name(), m.layout().shape(b), &v)?;
/// }
/// let (m64, report) = ModelOf::<f64>::from_state_dict(&sd, true)?;
/// assert!(report.is_clean());
/// assert_eq!(m64.params[0], m.params[0] as f64 + 1e-12); // f64 kept, not rounded to f32
/// // And from an f32 model, exactly:
/// assert_eq!(ModelOf::<f64>::from(&m).to_model(), m);
/// # Ok::<(), memrnn_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOf<T> {
    pub cell: CellDims,
    /// Flat parameters in [`crate::ParamLayout`] order.
    pub params: Vec<T>,
    pub readout: Option<ReadoutOf<T>>,
}

impl<T: Real> From<&Model> for ModelOf<T> {
    fn from(m: &Model) -> Self {
        ModelOf {
            cell: m.cell,
            params: convert(&m.params),
            readout: m.readout.as_ref().map(|r| ReadoutOf {
                classes: r.classes,
                hidden: r.hidden,
                weight: convert(&r.weight),
                bias: convert(&r.bias),
            }),
        }
    }
}

impl<T: Real> ModelOf<T> {
    /// The f32 [`Model`] (rounded to nearest from f64).
    pub fn to_model(&self) -> Model {
        Model {
            cell: self.cell,
            params: convert(&self.params),
            readout: self.readout.as_ref().map(|r| Readout {
                classes: r.classes,
                hidden: r.hidden,
                weight: convert(&r.weight),
                bias: convert(&r.bias),
            }),
        }
    }

    /// Builds a model from a state dict; see [`Model::from_state_dict`].
    pub fn from_state_dict(sd: &StateDict, strict: bool) -> Result<(Self, LoadReport)> {
        let (cell, classes, mut report) = infer_dims(sd)?;
        let mut model = ModelOf {
            cell,
            params: vec![T::zero(); cell.layout().len()],
            readout: classes.map(|c| ReadoutOf {
                classes: c,
                hidden: cell.hidden,
                weight: vec![T::zero(); c * cell.hidden],
                bias: vec![T::zero(); c],
            }),
        };
        let loaded = model.load_state_dict(sd, false)?;
        report.missing.extend(loaded.missing);
        report.mismatched.extend(loaded.mismatched);
        // A readout.weight the cell cannot use is already reported as mismatched.
        let reported = |n: &String| report.mismatched.iter().any(|m| &m.name == n);
        let unexpected: Vec<String> = loaded
            .unexpected
            .into_iter()
            .filter(|n| !reported(n))
            .collect();
        report.unexpected = unexpected;
        if strict && !report.is_clean() {
            return Err(strict_error(&report));
        }
        Ok((model, report))
    }

    /// Loads `sd` into this model, as `load_state_dict` does; see
    /// [`Model::load_state_dict`].
    pub fn load_state_dict(&mut self, sd: &StateDict, strict: bool) -> Result<LoadReport> {
        let layout = self.cell.layout();
        let v = layout.split_mut(&mut self.params);
        let mut targets: Vec<(&str, Vec<usize>, &mut [T])> = vec![
            (
                ParamBlock::WeightIh.torch_name(),
                layout.shape(ParamBlock::WeightIh),
                v.w_ih,
            ),
            (
                ParamBlock::WeightHh.torch_name(),
                layout.shape(ParamBlock::WeightHh),
                v.w_hh,
            ),
            (
                ParamBlock::BiasIh.torch_name(),
                layout.shape(ParamBlock::BiasIh),
                v.b_ih,
            ),
            (
                ParamBlock::BiasHh.torch_name(),
                layout.shape(ParamBlock::BiasHh),
                v.b_hh,
            ),
        ];
        if let Some(r) = &mut self.readout {
            targets.push((READOUT_WEIGHT, vec![r.classes, r.hidden], &mut r.weight));
            targets.push((READOUT_BIAS, vec![r.classes], &mut r.bias));
        }
        let mut report = LoadReport::default();
        let mut staged = Vec::new();
        for (i, (name, want, _)) in targets.iter().enumerate() {
            let Some(e) = sd.entries.get(*name) else {
                report.missing.push(name.to_string());
                continue;
            };
            match &e.values {
                Some(values) if e.shape == *want => {
                    check_finite(name, values)?;
                    staged.push((i, values));
                }
                _ => report.mismatched.push(Mismatch {
                    name: name.to_string(),
                    expected: want.clone(),
                    found: e.shape.clone(),
                    dtype: e.dtype.clone(),
                }),
            }
        }
        report.unexpected = sd
            .entries
            .keys()
            .filter(|k| !targets.iter().any(|(n, _, _)| n == k))
            .cloned()
            .collect();
        if strict && !report.is_clean() {
            return Err(strict_error(&report));
        }
        for (i, values) in staged {
            for (d, &v) in targets[i].2.iter_mut().zip(values) {
                *d = T::from_f64(v);
            }
        }
        Ok(report)
    }
}

fn strict_error(report: &LoadReport) -> Error {
    Error::InvalidArgument(format!(
        "the state dict does not match the model ({report}); memrnn reads PyTorch's layer-0 names \
         weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 and optionally readout.weight / \
         readout.bias; pass strict = false to load what matches"
    ))
}

/// The cell (from `weight_hh_l0`, `weight_ih_l0` and the `memrnn.cell` metadata) and the
/// readout's class count (from `readout.weight`), with what could not be used reported.
fn infer_dims(sd: &StateDict) -> Result<(CellDims, Option<usize>, LoadReport)> {
    let bad = |reason: String| Error::InvalidArgument(format!("state dict: {reason}"));
    let matrix = |name: &str| -> Result<(usize, usize)> {
        match sd.entries.get(name) {
            None => Err(bad(format!(
                "no tensor named {name:?} (found {:?}); weight_ih_l0 and weight_hh_l0 fix the \
                 cell's sizes and must be present even when strict = false",
                sd.entries.keys().collect::<Vec<_>>()
            ))),
            Some(e) if !e.dtype.is_float() => Err(bad(format!(
                "{name} has dtype {}; memrnn reads F16, BF16, F32 and F64",
                e.dtype
            ))),
            Some(e) if e.shape.len() == 2 => Ok((e.shape[0], e.shape[1])),
            Some(e) => Err(bad(format!(
                "{name} has shape {:?}; it must be a matrix",
                e.shape
            ))),
        }
    };
    let (rows, hidden) = matrix(ParamBlock::WeightHh.torch_name())?;
    if hidden == 0 || rows % hidden != 0 {
        return Err(bad(format!(
            "weight_hh_l0 has shape [{rows}, {hidden}]: rows must be 1, 3 or 4 times the hidden size"
        )));
    }
    let gates = rows / hidden;
    let kind = CellKind::from_gates(gates).ok_or_else(|| {
        bad(format!(
            "weight_hh_l0 has {gates} gate blocks; RNN has 1, GRU 3, LSTM 4"
        ))
    })?;
    if let Some(name) = sd.metadata.get(CELL_METADATA_KEY) {
        let k: CellKind = name.parse()?;
        if k != kind {
            return Err(bad(format!(
                "metadata says the cell is {k} but weight_hh_l0's shape [{rows}, {hidden}] is a {kind}"
            )));
        }
    }
    let (_, input) = matrix(ParamBlock::WeightIh.torch_name())?;
    let cell = CellDims::new(kind, input, hidden)?;
    let mut report = LoadReport::default();
    let w = sd.entries.get(READOUT_WEIGHT);
    let has_bias = sd.entries.contains_key(READOUT_BIAS);
    let classes = match w {
        Some(e) if e.dtype.is_float() && e.shape.len() == 2 && e.shape[1] == hidden => {
            (e.shape[0] > 0).then_some(e.shape[0])
        }
        Some(e) => {
            // Not a readout this cell can use: reported, and the model gets none.
            report.mismatched.push(Mismatch {
                name: READOUT_WEIGHT.to_string(),
                expected: vec![e.shape.first().copied().unwrap_or(0), hidden],
                found: e.shape.clone(),
                dtype: e.dtype.clone(),
            });
            None
        }
        None => {
            if has_bias {
                report.missing.push(READOUT_WEIGHT.to_string());
            }
            None
        }
    };
    Ok((cell, classes, report))
}

impl Model {
    /// Builds a model from named tensors, like constructing `torch.nn.RNN/GRU/LSTM` of the
    /// right sizes and calling `load_state_dict(sd, strict)`.
    ///
    /// The sizes come from `weight_hh_l0 [G·H, H]` (the kind from `G`, checked against
    /// `memrnn.cell` metadata when present) and `weight_ih_l0 [G·H, I]`: those two must be
    /// present and be float matrices whatever `strict` says. A readout is built when
    /// `readout.weight` is a `[C, H]` float matrix.
    ///
    /// - `strict = true`: any missing, unexpected or mismatched name is an error that
    ///   lists them all (what [`crate::checkpoint::load_checkpoint`] does).
    /// - `strict = false`: what matches is loaded, parameters with nothing to load stay
    ///   zero (a missing bias is a bias-free layer), and the [`LoadReport`] says what was
    ///   missing, unexpected (other modules' tensors, integer buffers, …) or mismatched.
    ///
    /// Non-finite values are an error in both modes. Values are rounded to f32; use
    /// [`ModelOf::<f64>::from_state_dict`](ModelOf::from_state_dict) to keep f64.
    pub fn from_state_dict(sd: &StateDict, strict: bool) -> Result<(Model, LoadReport)> {
        let (m, report) = ModelOf::<f32>::from_state_dict(sd, strict)?;
        Ok((m.to_model(), report))
    }

    /// Loads `sd` into this model, like PyTorch's `module.load_state_dict(sd, strict)`:
    /// the model's sizes (and whether it has a readout) are fixed; names that are missing
    /// or mismatched keep their current values. With `strict = true` any missing,
    /// unexpected or mismatched name is an error and the model is left unchanged.
    ///
    /// ```
    /// use memrnn_core::{CellDims, CellKind, Model, StateDict};
    ///
    /// let mut m = Model::init(CellDims::new(CellKind::Lstm, 2, 3)?, 1);
    /// let before = m.clone();
    /// let mut sd = StateDict::new();
    /// sd.insert_f32("bias_hh_l0", vec![12], &[0.5; 12])?;
    /// sd.insert_f32("bias_ih_l0", vec![11], &[0.5; 11])?; // wrong length
    /// let report = m.load_state_dict(&sd, false)?;
    /// assert_eq!(report.missing, ["weight_ih_l0", "weight_hh_l0"]);
    /// assert_eq!(report.mismatched[0].name, "bias_ih_l0");
    /// let l = m.layout();
    /// assert_eq!(l.split(&m.params).b_hh, &[0.5; 12]);
    /// assert_eq!(l.split(&m.params).w_hh, l.split(&before.params).w_hh); // kept
    /// # Ok::<(), memrnn_core::Error>(())
    /// ```
    pub fn load_state_dict(&mut self, sd: &StateDict, strict: bool) -> Result<LoadReport> {
        let mut m = ModelOf::<f32>::from(&*self);
        let report = m.load_state_dict(sd, strict)?;
        *self = m.to_model();
        Ok(report)
    }
}

/// Reads a safetensors state dict and builds a model from it
/// ([`Model::from_state_dict`]), with the file's metadata. `strict = true` behaves as
/// [`crate::checkpoint::load_checkpoint`].
pub fn load_state_dict_file(path: &Path, strict: bool) -> Result<(Checkpoint, LoadReport)> {
    let sd = StateDict::read(path)?;
    let (model, report) = Model::from_state_dict(&sd, strict).map_err(|e| Error::Checkpoint {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((
        Checkpoint {
            model,
            metadata: sd.metadata,
        },
        report,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{load_checkpoint, read_tensors, save_checkpoint};
    use safetensors::tensor::TensorView;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("memrnn-core-sd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// Writes tensors of any dtype as raw little-endian bytes, as PyTorch would.
    fn write_raw(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    }

    fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }

    fn gru_blocks(m: &Model) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        let l = m.layout();
        ParamBlock::ALL
            .iter()
            .map(|&b| (b.torch_name(), l.shape(b), m.params[l.range(b)].to_vec()))
            .collect()
    }

    #[test]
    fn strict_matches_load_checkpoint_and_non_strict_reports_extras() {
        let mut model = Model::init(CellDims::new(CellKind::Gru, 3, 4).unwrap(), 3);
        model.readout = Some(Readout::init(5, 4, 2).unwrap());
        let path = tmp("clean.safetensors");
        save_checkpoint(&path, &model, &BTreeMap::new()).unwrap();
        let (ck, report) = load_state_dict_file(&path, true).unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(ck.model, load_checkpoint(&path).unwrap().model);
        assert_eq!(ck.metadata.get(CELL_METADATA_KEY).unwrap(), "gru");

        // The same tensors plus an f32 tensor of another module and an i64 buffer.
        let mut t: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = gru_blocks(&model)
            .into_iter()
            .map(|(n, s, v)| (n, Dtype::F32, s, le(&v, f32::to_le_bytes)))
            .collect();
        let r = model.readout.as_ref().unwrap();
        t.push((
            READOUT_WEIGHT,
            Dtype::F32,
            vec![5, 4],
            le(&r.weight, f32::to_le_bytes),
        ));
        t.push((
            READOUT_BIAS,
            Dtype::F32,
            vec![5],
            le(&r.bias, f32::to_le_bytes),
        ));
        t.push((
            "head.weight",
            Dtype::F32,
            vec![1],
            le(&[1f32], f32::to_le_bytes),
        ));
        t.push((
            "bn.num_batches_tracked",
            Dtype::I64,
            vec![],
            le(&[7i64], i64::to_le_bytes),
        ));
        let path = tmp("extra.safetensors");
        write_raw(&path, &t);
        assert!(load_checkpoint(&path).is_err());
        let err = load_state_dict_file(&path, true).unwrap_err().to_string();
        assert!(
            err.contains("head.weight") && err.contains("num_batches_tracked"),
            "{err}"
        );
        let (ck, report) = load_state_dict_file(&path, false).unwrap();
        assert_eq!(ck.model, model);
        assert_eq!(report.unexpected, ["bn.num_batches_tracked", "head.weight"]);
        assert!(report.missing.is_empty() && report.mismatched.is_empty());
        let sd = StateDict::read(&path).unwrap();
        assert_eq!(
            sd.entries["bn.num_batches_tracked"].dtype,
            TensorDtype::Other("I64".into())
        );
        assert_eq!(sd.entries["bn.num_batches_tracked"].values, None);
    }

    #[test]
    fn missing_mismatched_and_wrong_dtype_are_reported_not_loaded() {
        let model = Model::init(CellDims::new(CellKind::Lstm, 2, 3).unwrap(), 5);
        let b = gru_blocks(&model);
        let mut sd = StateDict::new();
        sd.insert_f32(b[0].0, b[0].1.clone(), &b[0].2).unwrap();
        sd.insert_f32(b[1].0, b[1].1.clone(), &b[1].2).unwrap();
        sd.insert_f32("bias_ih_l0", vec![3, 4], &b[2].2).unwrap(); // right count, wrong shape
        sd.entries.insert(
            "bias_hh_l0".into(),
            StateEntry {
                dtype: TensorDtype::Other("I32".into()),
                shape: vec![12],
                values: None,
            },
        );
        sd.insert_f32(READOUT_BIAS, vec![2], &[1.0, 2.0]).unwrap(); // no readout.weight
        let (m, report) = Model::from_state_dict(&sd, false).unwrap();
        assert_eq!(report.missing, [READOUT_WEIGHT]);
        assert_eq!(report.unexpected, [READOUT_BIAS]);
        let names: Vec<&str> = report.mismatched.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["bias_ih_l0", "bias_hh_l0"]);
        assert_eq!(report.mismatched[0].found, [3, 4]);
        assert_eq!(report.mismatched[0].expected, [12]);
        let text = report.to_string();
        assert!(text.contains("I32") && text.contains("[3, 4]"), "{text}");
        assert!(m.readout.is_none());
        let l = m.layout();
        assert_eq!(l.split(&m.params).w_hh, l.split(&model.params).w_hh);
        assert!(l.split(&m.params).b_ih.iter().all(|&v| v == 0.0));
        // Strict: refused, and an existing model is left as it was.
        assert!(Model::from_state_dict(&sd, true).is_err());
        let mut kept = model.clone();
        assert!(kept.load_state_dict(&sd, true).is_err());
        assert_eq!(kept, model);
        // Non-finite values never load.
        sd.insert_f32(b[1].0, b[1].1.clone(), &vec![f32::NAN; b[1].2.len()])
            .unwrap();
        let err = Model::from_state_dict(&sd, false).unwrap_err().to_string();
        assert!(err.contains("weight_hh_l0"), "{err}");
        // Without the weights the sizes are unknown: an error whatever `strict` says.
        sd.entries.remove("weight_ih_l0");
        let err = Model::from_state_dict(&sd, false).unwrap_err().to_string();
        assert!(err.contains("weight_ih_l0"), "{err}");
    }

    #[test]
    fn f16_and_bf16_files_are_read_exactly() {
        // Values exactly representable in both half formats.
        let vals = [0.5f32, -1.25, 3.0, 0.0, -0.0625, 96.0];
        let f16: Vec<u8> = le(&vals, |v| half::f16::from_f32(v).to_le_bytes());
        let bf16: Vec<u8> = le(&vals, |v| half::bf16::from_f32(v).to_le_bytes());
        let path = tmp("half.safetensors");
        write_raw(
            &path,
            &[
                ("a", Dtype::F16, vec![2, 3], f16.clone()),
                ("b", Dtype::BF16, vec![6], bf16),
            ],
        );
        let (t, _) = read_tensors(&path).unwrap();
        let want: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
        assert_eq!(t["a"].data, want);
        assert_eq!(t["a"].shape, [2, 3]);
        assert_eq!(t["b"].data, want);
        let sd = StateDict::read(&path).unwrap();
        assert_eq!(sd.entries["a"].dtype, TensorDtype::F16);
        assert_eq!(sd.entries["b"].dtype, TensorDtype::BF16);
        // A non-representable f16 value reads as the f16 it is, not the f32 it came from.
        let path = tmp("half-round.safetensors");
        let x = half::f16::from_f32(0.1);
        write_raw(
            &path,
            &[("x", Dtype::F16, vec![1], x.to_le_bytes().to_vec())],
        );
        assert_eq!(read_tensors(&path).unwrap().0["x"].data, [x.to_f64()]);
        // A whole RNN state dict in f16 loads.
        let m = Model::init(CellDims::new(CellKind::Rnn, 2, 2).unwrap(), 9);
        let t: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = gru_blocks(&m)
            .into_iter()
            .map(|(n, s, v)| {
                (
                    n,
                    Dtype::F16,
                    s,
                    le(&v, |x| half::f16::from_f32(x).to_le_bytes()),
                )
            })
            .collect();
        let path = tmp("rnn-f16.safetensors");
        write_raw(&path, &t);
        let back = load_checkpoint(&path).unwrap().model;
        for (a, b) in back.params.iter().zip(&m.params) {
            assert_eq!(*a, half::f16::from_f32(*b).to_f32());
        }
    }

    #[test]
    fn f64_parameters_keep_their_precision() {
        let m = Model::init(CellDims::new(CellKind::Gru, 2, 3).unwrap(), 4);
        let l = m.layout();
        // f64 values that f32 cannot hold.
        let p64: Vec<f64> = m.params.iter().map(|&v| v as f64 + 1e-10).collect();
        let t: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = ParamBlock::ALL
            .iter()
            .map(|&b| {
                let v = &p64[l.range(b)];
                (
                    b.torch_name(),
                    Dtype::F64,
                    l.shape(b),
                    le(v, f64::to_le_bytes),
                )
            })
            .collect();
        let path = tmp("f64.safetensors");
        write_raw(&path, &t);
        let sd = StateDict::read(&path).unwrap();
        let (m64, report) = ModelOf::<f64>::from_state_dict(&sd, true).unwrap();
        assert!(report.is_clean());
        assert_eq!(m64.params, p64);
        // The f32 model rounds; loading into an f64 model from f32 tensors is exact.
        let (m32, _) = Model::from_state_dict(&sd, true).unwrap();
        assert_ne!(convert::<f32, f64>(&m32.params), p64);
        let mut from32 = ModelOf::<f64>::from(&m32);
        let mut sd32 = StateDict::new();
        for b in ParamBlock::ALL {
            sd32.insert_f32(b.torch_name(), l.shape(b), &m.params[l.range(b)])
                .unwrap();
        }
        from32.load_state_dict(&sd32, true).unwrap();
        assert_eq!(from32.params, convert::<f32, f64>(&m.params));
        assert_eq!(from32.to_model(), m);
    }
}
