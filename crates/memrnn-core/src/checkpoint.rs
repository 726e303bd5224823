//! Checkpoints as safetensors under PyTorch's names, so that a `torch.nn.GRU` state dict
//! (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`) loads into memrnn and back.
//!
//! The readout is stored as `readout.weight [C, H]` and `readout.bias [C]` (a
//! `torch.nn.Linear` registered as `readout`). memrnn adds metadata (`memrnn.cell`, and
//! whatever the caller passes, such as the training config and step); a file written by
//! PyTorch has none, and the cell kind is then read off the shapes (`G = rows / H`).

use crate::cell::{CellDims, CellKind, ParamBlock};
use crate::error::{Error, Result};
use crate::model::{Model, Readout};
use safetensors::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const READOUT_WEIGHT: &str = "readout.weight";
pub const READOUT_BIAS: &str = "readout.bias";
/// Tensors whose names start with this prefix hold training state that travels with the
/// weights (a trainer's optimiser moments, written by `memrnn train` into the same file so
/// that weights and optimiser are committed together). Loading a model ignores them.
pub const TRAINING_STATE_PREFIX: &str = "memrnn.state.";
const CELL_KEY: &str = "memrnn.cell";

/// A tensor read from a safetensors file, widened to f64 (exact for f32, f64, f16 and bf16
/// sources).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl HostTensor {
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }
}

/// Every tensor of a safetensors file by name, and its string metadata.
pub type TensorFile = (BTreeMap<String, HostTensor>, BTreeMap<String, String>);

/// A model with the metadata its checkpoint carried.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub model: Model,
    pub metadata: BTreeMap<String, String>,
}

fn ckpt_err(path: &str, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Writes named f32 tensors (name, shape, values) and string metadata as safetensors,
/// atomically: to a temporary file beside `path`, then renamed over it, so a crash never
/// leaves a half-written checkpoint where the last good one was.
pub fn write_tensors(
    path: &Path,
    tensors: &[(&str, Vec<usize>, &[f32])],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes = tensors_to_bytes(tensors, metadata)
        .map_err(|reason| ckpt_err(&path.display().to_string(), reason))?;
    write_bytes_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically: to `path` with the extension `safetensors.tmp`
/// beside it, synced to disk, then renamed over `path` (and the folder synced). On any
/// failure the temporary file is removed and `path` is left as it was.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("safetensors.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        if tmp.is_file() {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(Error::io(&tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // Make the rename itself durable; a folder that cannot be opened (or synced) changes
    // nothing about the file's consistency, so it is not an error.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The safetensors bytes of named f32 tensors and metadata.
pub fn tensors_to_bytes(
    tensors: &[(&str, Vec<usize>, &[f32])],
    metadata: &BTreeMap<String, String>,
) -> std::result::Result<Vec<u8>, String> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, shape, data) in tensors {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(format!(
                "tensor {name}: shape {shape:?} holds {n} values but {} were given",
                data.len()
            ));
        }
        let view = safetensors::tensor::TensorView::new(
            Dtype::F32,
            shape.clone(),
            bytemuck::cast_slice(data),
        )
        .map_err(|e| format!("tensor {name}: {e}"))?;
        views.push((name.to_string(), view));
    }
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

// safetensors stores little-endian values; `tensors_to_bytes` hands it the f32s' memory
// as it is (bytemuck::cast_slice), which is little-endian on every target memrnn builds for.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "checkpoint writing assumes a little-endian target"
);

/// Reads every tensor of a safetensors file (f32, f64, f16 or bf16) and its metadata.
pub fn read_tensors(
    path: &Path,
) -> Result<(BTreeMap<String, HostTensor>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    tensors_from_bytes(&bytes).map_err(|reason| ckpt_err(&path.display().to_string(), reason))
}

/// Parses safetensors bytes into f64 tensors and metadata.
pub fn tensors_from_bytes(bytes: &[u8]) -> std::result::Result<TensorFile, String> {
    let sd = crate::state_dict::StateDict::from_bytes(bytes)?;
    let mut out = BTreeMap::new();
    for (name, e) in sd.entries {
        let data = e.values.ok_or_else(|| {
            format!(
                "tensor {name} has dtype {}; memrnn reads F32, F64, F16 and BF16 (convert with \
                 tensor.float(), or read the file as a StateDict, which reports such tensors)",
                e.dtype
            )
        })?;
        out.insert(
            name,
            HostTensor {
                shape: e.shape,
                data,
            },
        );
    }
    Ok((out, sd.metadata))
}

/// Saves a model under PyTorch's names with `memrnn.cell` and the caller's metadata.
pub fn save_checkpoint(
    path: &Path,
    model: &Model,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    save_checkpoint_with_state(path, model, metadata, &[])
}

/// [`save_checkpoint`] with training state in the same file, committed in one atomic
/// write: `state` tensors must be named with [`TRAINING_STATE_PREFIX`] (a model loader
/// ignores them; a PyTorch `load_state_dict(..., strict=False)` reports them as unexpected
/// and skips them) and hold finite values.
pub fn save_checkpoint_with_state(
    path: &Path,
    model: &Model,
    metadata: &BTreeMap<String, String>,
    state: &[(&str, Vec<usize>, &[f32])],
) -> Result<()> {
    model.validate()?;
    for (name, _, data) in state {
        if !name.starts_with(TRAINING_STATE_PREFIX) {
            return Err(ckpt_err(
                &path.display().to_string(),
                format!("training state tensor {name:?} must be named {TRAINING_STATE_PREFIX}…"),
            ));
        }
        crate::error::check_finite(name, data)?;
    }
    let layout = model.layout();
    let view = layout.split(&model.params);
    let mut tensors: Vec<(&str, Vec<usize>, &[f32])> = vec![
        (
            ParamBlock::WeightIh.torch_name(),
            layout.shape(ParamBlock::WeightIh),
            view.w_ih,
        ),
        (
            ParamBlock::WeightHh.torch_name(),
            layout.shape(ParamBlock::WeightHh),
            view.w_hh,
        ),
        (
            ParamBlock::BiasIh.torch_name(),
            layout.shape(ParamBlock::BiasIh),
            view.b_ih,
        ),
        (
            ParamBlock::BiasHh.torch_name(),
            layout.shape(ParamBlock::BiasHh),
            view.b_hh,
        ),
    ];
    if let Some(r) = &model.readout {
        tensors.push((READOUT_WEIGHT, vec![r.classes, r.hidden], &r.weight));
        tensors.push((READOUT_BIAS, vec![r.classes], &r.bias));
    }
    tensors.extend(state.iter().map(|(n, s, d)| (*n, s.clone(), *d)));
    let mut meta = metadata.clone();
    meta.insert(CELL_KEY.to_string(), model.cell.kind.name().to_string());
    write_tensors(path, &tensors, &meta)
}

/// Loads a checkpoint written by [`save_checkpoint`] or a PyTorch state dict saved with
/// `safetensors.torch.save_file`. Missing or extra names, inconsistent shapes, unknown
/// dtypes and non-finite values are errors that say which tensor is wrong.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let (tensors, metadata) = read_tensors(path)?;
    let p = path.display().to_string();
    let model = model_from_tensors(&tensors, &metadata).map_err(|reason| ckpt_err(&p, reason))?;
    model.validate().map_err(|e| ckpt_err(&p, e.to_string()))?;
    Ok(Checkpoint { model, metadata })
}

fn model_from_tensors(
    tensors: &BTreeMap<String, HostTensor>,
    metadata: &BTreeMap<String, String>,
) -> std::result::Result<Model, String> {
    let get = |name: &str| {
        tensors.get(name).ok_or_else(|| {
            let have: Vec<&String> = tensors.keys().collect();
            format!(
                "no tensor named {name:?} (found {have:?}); memrnn expects PyTorch's layer-0 names \
                 weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 and optionally readout.weight / readout.bias"
            )
        })
    };
    let known = [
        ParamBlock::WeightIh.torch_name(),
        ParamBlock::WeightHh.torch_name(),
        ParamBlock::BiasIh.torch_name(),
        ParamBlock::BiasHh.torch_name(),
        READOUT_WEIGHT,
        READOUT_BIAS,
    ];
    if let Some(extra) = tensors
        .keys()
        .filter(|k| !k.starts_with(TRAINING_STATE_PREFIX))
        .find(|k| !known.contains(&k.as_str()))
    {
        return Err(format!(
            "unexpected tensor {extra:?}: memrnn reads a single-layer, unidirectional RNN/GRU/LSTM \
             (names {known:?})"
        ));
    }
    let w_hh = get(ParamBlock::WeightHh.torch_name())?;
    let w_ih = get(ParamBlock::WeightIh.torch_name())?;
    if w_hh.shape.len() != 2 || w_ih.shape.len() != 2 {
        return Err(format!(
            "weight_hh_l0 has shape {:?} and weight_ih_l0 {:?}; both must be matrices",
            w_hh.shape, w_ih.shape
        ));
    }
    let hidden = w_hh.shape[1];
    if hidden == 0 || w_hh.shape[0] % hidden != 0 {
        return Err(format!(
            "weight_hh_l0 has shape {:?}: rows must be a multiple (1, 3 or 4) of the hidden size",
            w_hh.shape
        ));
    }
    let gates = w_hh.shape[0] / hidden;
    let kind_from_shape = CellKind::from_gates(gates)
        .ok_or_else(|| format!("weight_hh_l0 has {gates} gate blocks; RNN has 1, GRU 3, LSTM 4"))?;
    let kind = match metadata.get(CELL_KEY) {
        Some(name) => {
            let k: CellKind = name.parse().map_err(|e: Error| e.to_string())?;
            if k != kind_from_shape {
                return Err(format!(
                    "metadata says the cell is {k} but weight_hh_l0's shape {:?} is a {kind_from_shape}",
                    w_hh.shape
                ));
            }
            k
        }
        None => kind_from_shape,
    };
    let input = w_ih.shape[1];
    let cell = CellDims::new(kind, input, hidden).map_err(|e| e.to_string())?;
    let layout = cell.layout();
    let mut params = vec![0f32; layout.len()];
    for block in ParamBlock::ALL {
        let t = get(block.torch_name())?;
        let want = layout.shape(block);
        if t.shape != want {
            return Err(format!(
                "{} has shape {:?}; a {kind} cell with input {input} and hidden {hidden} needs {want:?}",
                block.torch_name(),
                t.shape
            ));
        }
        params[layout.range(block)].copy_from_slice(&t.to_f32());
    }
    let readout = match (tensors.get(READOUT_WEIGHT), tensors.get(READOUT_BIAS)) {
        (None, None) => None,
        (Some(w), Some(b)) => {
            if w.shape.len() != 2 || w.shape[1] != hidden || b.shape != [w.shape[0]] {
                return Err(format!(
                    "readout.weight has shape {:?} and readout.bias {:?}; they must be [C, {hidden}] and [C]",
                    w.shape, b.shape
                ));
            }
            Some(Readout {
                classes: w.shape[0],
                hidden,
                weight: w.to_f32(),
                bias: b.to_f32(),
            })
        }
        _ => {
            return Err(
                "readout.weight and readout.bias must both be present or both absent".into(),
            )
        }
    };
    Ok(Model {
        cell,
        params,
        readout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("memrnn-core-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn round_trip_keeps_everything() {
        for kind in CellKind::ALL {
            let cell = CellDims::new(kind, 3, 5).unwrap();
            let mut model = Model::init(cell, 7);
            model.readout = Some(Readout::init(11, 5, 8).unwrap());
            let path = tmp(&format!("rt-{kind}.safetensors"));
            let mut meta = BTreeMap::new();
            meta.insert("step".to_string(), "42".to_string());
            save_checkpoint(&path, &model, &meta).unwrap();
            let back = load_checkpoint(&path).unwrap();
            assert_eq!(back.model, model);
            assert_eq!(back.metadata.get("step").map(String::as_str), Some("42"));
        }
    }

    #[test]
    fn wrong_names_shapes_and_values_are_clear_errors() {
        let cell = CellDims::new(CellKind::Gru, 3, 4).unwrap();
        let model = Model::init(cell, 1);
        let l = model.layout();
        let v = l.split(&model.params);
        let meta = BTreeMap::new();
        // A misspelt name.
        let path = tmp("bad-name.safetensors");
        write_tensors(
            &path,
            &[
                ("weight_ih_l0", l.shape(ParamBlock::WeightIh), v.w_ih),
                ("weight_hh", l.shape(ParamBlock::WeightHh), v.w_hh),
                ("bias_ih_l0", l.shape(ParamBlock::BiasIh), v.b_ih),
                ("bias_hh_l0", l.shape(ParamBlock::BiasHh), v.b_hh),
            ],
            &meta,
        )
        .unwrap();
        let err = load_checkpoint(&path).unwrap_err().to_string();
        assert!(err.contains("weight_hh"), "{err}");
        // A bias of the wrong length.
        let path = tmp("bad-shape.safetensors");
        write_tensors(
            &path,
            &[
                ("weight_ih_l0", l.shape(ParamBlock::WeightIh), v.w_ih),
                ("weight_hh_l0", l.shape(ParamBlock::WeightHh), v.w_hh),
                ("bias_ih_l0", vec![11], &v.b_ih[..11]),
                ("bias_hh_l0", l.shape(ParamBlock::BiasHh), v.b_hh),
            ],
            &meta,
        )
        .unwrap();
        let err = load_checkpoint(&path).unwrap_err().to_string();
        assert!(err.contains("bias_ih_l0") && err.contains("[12]"), "{err}");
        // NaN in a weight.
        let mut bad = model.clone();
        bad.params[3] = f32::NAN;
        assert!(save_checkpoint(&tmp("nan.safetensors"), &bad, &meta).is_err());
        // Truncated file.
        let path = tmp("trunc.safetensors");
        save_checkpoint(&path, &model, &meta).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_checkpoint(&path).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // Metadata that contradicts the shapes.
        let path = tmp("lie.safetensors");
        let mut lie = BTreeMap::new();
        lie.insert(CELL_KEY.to_string(), "lstm".to_string());
        let v = l.split(&model.params);
        write_tensors(
            &path,
            &[
                ("weight_ih_l0", l.shape(ParamBlock::WeightIh), v.w_ih),
                ("weight_hh_l0", l.shape(ParamBlock::WeightHh), v.w_hh),
                ("bias_ih_l0", l.shape(ParamBlock::BiasIh), v.b_ih),
                ("bias_hh_l0", l.shape(ParamBlock::BiasHh), v.b_hh),
            ],
            &lie,
        )
        .unwrap();
        let err = load_checkpoint(&path).unwrap_err().to_string();
        assert!(err.contains("lstm") && err.contains("gru"), "{err}");
    }

    #[test]
    fn training_state_tensors_are_ignored_when_loading_a_model() {
        let cell = CellDims::new(CellKind::Rnn, 2, 3).unwrap();
        let model = Model::init(cell, 3);
        let l = model.layout();
        let v = l.split(&model.params);
        let m = vec![0.5f32; model.params.len()];
        let path = tmp("state.safetensors");
        let name = format!("{TRAINING_STATE_PREFIX}adam.m");
        write_tensors(
            &path,
            &[
                ("weight_ih_l0", l.shape(ParamBlock::WeightIh), v.w_ih),
                ("weight_hh_l0", l.shape(ParamBlock::WeightHh), v.w_hh),
                ("bias_ih_l0", l.shape(ParamBlock::BiasIh), v.b_ih),
                ("bias_hh_l0", l.shape(ParamBlock::BiasHh), v.b_hh),
                (&name, vec![m.len()], &m),
            ],
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(load_checkpoint(&path).unwrap().model, model);
    }

    #[test]
    fn a_failed_atomic_write_leaves_the_target_and_no_temporary_file() {
        // The target is a folder: the temporary file is written, the rename fails.
        let dir = tmp("blocked");
        let target = dir.join("x.safetensors");
        std::fs::create_dir_all(&target).unwrap();
        assert!(write_bytes_atomic(&target, b"abc").is_err());
        assert!(target.is_dir());
        assert!(!dir.join("x.safetensors.tmp").exists());
        // A good write replaces the previous file whole.
        let ok = dir.join("y.safetensors");
        write_bytes_atomic(&ok, b"one").unwrap();
        write_bytes_atomic(&ok, b"two").unwrap();
        assert_eq!(std::fs::read(&ok).unwrap(), b"two");
        assert!(!dir.join("y.safetensors.tmp").exists());
    }
}
