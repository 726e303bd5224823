//! Property tests: the IDX and safetensors loaders and the option validation, fed random
//! bytes, random truncations and random field values, never panic, never allocate beyond
//! what the input holds (or the memory estimate allows), and accept exactly what is valid.
//! Case counts are modest so the whole file runs in seconds.

use memrnn_core::checkpoint::{
    load_checkpoint, save_checkpoint_with_state, tensors_from_bytes, tensors_to_bytes,
};
use memrnn_core::{CellDims, CellKind, Model, Readout};
use memrnn_train::eval::EvalConfig;
use memrnn_train::idx::{idx_u8_bytes, parse_idx_u8, read_images};
use memrnn_train::limits::{self, from_json_strict, MemoryBudget};
use memrnn_train::options::{DiagnoseOptions, SlowPointOptions};
use memrnn_train::task::{Curriculum, StageSchedule};
use memrnn_train::train::TrainConfig;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

fn tmp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-train-props-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A small GRU checkpoint with optimiser state, as bytes (written once).
fn checkpoint_bytes() -> Vec<u8> {
    static B: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    B.get_or_init(make_checkpoint_bytes).clone()
}

fn make_checkpoint_bytes() -> Vec<u8> {
    let cell = CellDims::new(CellKind::Gru, 3, 2).unwrap();
    let mut model = Model::init(cell, 5);
    model.readout = Some(Readout::init(11, 2, 6).unwrap());
    let path = tmp_dir().join("proto.safetensors");
    let m = vec![0.25f32; model.params.len()];
    let mut meta = BTreeMap::new();
    meta.insert("memrnn.train.step".to_string(), "3".to_string());
    save_checkpoint_with_state(
        &path,
        &model,
        &meta,
        &[("memrnn.state.adam.params.m", vec![m.len()], &m)],
    )
    .unwrap();
    std::fs::read(&path).unwrap()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn idx_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), ndim in 1usize..4) {
        let r = parse_idx_u8(Path::new("x"), &bytes, ndim);
        if let Ok(idx) = r {
            // Whatever parses holds exactly the bytes that follow its header.
            prop_assert_eq!(idx.data.len(), idx.dims.iter().product::<usize>());
            prop_assert_eq!(idx.data.len() + 4 + 4 * ndim, bytes.len());
        }
    }

    #[test]
    fn idx_headers_with_any_dims_never_allocate_beyond_the_file(
        dims in proptest::collection::vec(any::<u32>(), 3),
        payload in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bytes = vec![0u8, 0, 8, 3];
        for d in &dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(&payload);
        match parse_idx_u8(Path::new("x"), &bytes, 3) {
            Ok(idx) => prop_assert_eq!(idx.data, payload),
            Err(e) => {
                let e = e.to_string();
                prop_assert!(e.contains("truncated") || e.contains("trailing") || e.contains("absurdly"), "{}", e);
            }
        }
    }

    #[test]
    fn idx_truncations_are_refused(n in 1usize..6, cut_frac in 0.0f64..1.0) {
        let data: Vec<u8> = (0..n * 4).map(|i| i as u8).collect();
        let bytes = idx_u8_bytes(&[n, 2, 2], &data);
        let cut = ((bytes.len() as f64) * cut_frac) as usize;
        prop_assume!(cut < bytes.len());
        let e = parse_idx_u8(Path::new("x"), &bytes[..cut], 3).unwrap_err().to_string();
        prop_assert!(e.contains("truncated") || e.contains("too short") || e.contains("header"), "{}", e);
        prop_assert_eq!(parse_idx_u8(Path::new("x"), &bytes, 3).unwrap().data, data);
    }
}

proptest! {
    #![proptest_config(cases(48))]

    /// Gzipped files, truncated or with flipped bytes, are errors, never panics.
    #[test]
    fn gzipped_idx_damage_is_an_error(n in 1usize..4, cut_frac in 0.0f64..1.0, flip in any::<(usize, u8)>()) {
        let data: Vec<u8> = (0..n * 4).map(|i| (i * 13) as u8).collect();
        let mut z = gz(&idx_u8_bytes(&[n, 2, 2], &data));
        let path = tmp_dir().join(format!("gz-{n}-{}-{}.gz", flip.0, flip.1));
        let cut = ((z.len() as f64) * cut_frac) as usize;
        let i = flip.0 % z.len();
        if flip.1 != 0 && i >= 10 {
            z[i] ^= flip.1;
        }
        z.truncate(cut.max(2));
        std::fs::write(&path, &z).unwrap();
        let _ = read_images(&path); // Ok only when the damage left a valid file
        let _ = std::fs::remove_file(&path);
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn safetensors_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = tensors_from_bytes(&bytes);
        // A header length claiming more than the file is refused before any allocation.
        let mut b = (u64::MAX / 2).to_le_bytes().to_vec();
        b.extend_from_slice(&bytes);
        prop_assert!(tensors_from_bytes(&b).is_err());
    }

    #[test]
    fn safetensors_truncations_and_flips_never_panic(cut_frac in 0.0f64..1.0, flip in any::<(usize, u8)>()) {
        let good = checkpoint_bytes();
        let cut = ((good.len() as f64) * cut_frac) as usize;
        prop_assert!(tensors_from_bytes(&good[..cut]).is_err());
        let mut bad = good.clone();
        let i = flip.0 % bad.len();
        bad[i] ^= flip.1;
        let _ = tensors_from_bytes(&bad);
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// Through the model loader (names, shapes, cell metadata, finiteness): a damaged
    /// checkpoint is an error naming the file, or a valid model.
    #[test]
    fn damaged_checkpoints_load_or_fail_cleanly(flip in any::<(usize, u8)>(), cut_frac in 0.5f64..1.0) {
        let mut bytes = checkpoint_bytes();
        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1;
        bytes.truncate(((bytes.len() as f64) * cut_frac).ceil() as usize);
        let path = tmp_dir().join(format!("dmg-{}-{}.safetensors", flip.0, flip.1));
        std::fs::write(&path, &bytes).unwrap();
        match load_checkpoint(&path) {
            Ok(ck) => prop_assert!(ck.model.validate().is_ok()),
            Err(e) => prop_assert!(e.to_string().contains("dmg-"), "{}", e),
        }
        let _ = std::fs::remove_file(&path);
    }

    /// Any shapes and names in a well-formed safetensors file: loaded or refused cleanly.
    #[test]
    fn arbitrary_tensor_sets_never_panic(
        rows in 0usize..9, cols in 0usize..9, name_pick in 0usize..7, extra in any::<bool>()
    ) {
        let names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "readout.weight", "readout.bias", "other"];
        let data = vec![0.5f32; rows * cols];
        let mut ts: Vec<(&str, Vec<usize>, &[f32])> = vec![(names[name_pick], vec![rows, cols], &data)];
        if extra && name_pick != 1 {
            ts.push(("weight_hh_l0", vec![cols * 3, cols], &data[..0]));
        }
        if let Ok(bytes) = tensors_to_bytes(&ts, &BTreeMap::new()) {
            let path = tmp_dir().join(format!("set-{rows}-{cols}-{name_pick}-{extra}.safetensors"));
            std::fs::write(&path, &bytes).unwrap();
            let _ = load_checkpoint(&path);
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(-1.0f32),
        Just(0.0f32),
        -10.0f32..10.0,
        Just(1e30f32),
    ]
}

fn any_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..4,
        1usize..100,
        Just(1 << 20),
        Just(usize::MAX / 3),
        any::<usize>()
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    /// Training configurations with any values: validation never panics (nor allocates:
    /// the memory estimate saturates), and what it accepts is in range.
    #[test]
    fn train_config_validation_is_total(
        hidden in any_size(), batch in any_size(), t_max in any_size(),
        steps in prop_oneof![Just(0u64), 1u64..10_000, any::<u64>()],
        clip in proptest::option::of(any_f32()), lr in any_f32(),
        every in prop_oneof![Just(0u64), 1u64..100],
        threshold in prop_oneof![Just(f64::NAN), -1.0f64..2.0],
        cell in 0usize..3, curriculum in 0usize..3,
    ) {
        let mut c = TrainConfig {
            cell: CellKind::ALL[cell],
            hidden, batch, steps, clip,
            curriculum: [Curriculum::None, Curriculum::Delay, Curriculum::Vocab][curriculum],
            schedule: StageSchedule::Accuracy { threshold, min_steps: 1 },
            log_every: every,
            checkpoint_every: every,
            ..TrainConfig::default()
        };
        c.adam.lr = lr;
        c.task.t_max = t_max;
        if c.validate().is_ok() {
            prop_assert!(c.steps >= 1 && c.steps <= limits::MAX_STEPS);
            prop_assert!(c.clip.is_none_or(|v| v.is_finite() && v > 0.0));
            prop_assert!(c.hidden >= 1 && c.batch >= 1 && c.adam.lr > 0.0);
            prop_assert!((0.0..=1.0).contains(&threshold));
            if c.validate_for(785, 10_000, 0).is_ok() {
                let cell = CellDims::new(c.cell, 785, c.hidden).unwrap();
                let need = limits::train_bytes(&cell, c.task.t_max, c.batch, 0);
                prop_assert!(need <= MemoryBudget::detect().unwrap().available as u128);
            }
        } else {
            prop_assert!(c.validate_for(785, 10_000, 0).is_err());
        }
    }

    #[test]
    fn eval_and_analysis_options_validation_is_total(
        trials in any_size(), batch in any_size(), chunk in any_size(), span in any_size(),
        delays in proptest::collection::vec(any_size(), 0..4),
        candidates in any_size(), delay in any_size(), iters in any::<u32>(),
        steps in any_size(), hidden in 1usize..300,
    ) {
        let cell = CellDims::new(CellKind::Lstm, 785, hidden).unwrap();
        let e = EvalConfig { delays, trials, batch, chunk, read_span: span, seed: 1 };
        if e.validate_for(&cell, 10_000).is_ok() {
            prop_assert!(e.trials >= 1 && e.trials <= limits::MAX_TRIALS);
            prop_assert!(e.delays.iter().all(|&d| (1..=memrnn_train::eval::MAX_DELAY).contains(&d)));
        }
        let mut finder = memrnn_slowpoints::FinderConfig::default();
        finder.search.max_iters = iters;
        let s = SlowPointOptions { candidates, delay, mean_trials: 1000, finder, seed: 0 };
        if s.validate_for(&cell, 10_000).is_ok() {
            prop_assert!(s.candidates <= limits::MAX_CANDIDATES && iters >= 1);
        }
        let d = DiagnoseOptions { trials, steps, config: Default::default(), seed: 0 };
        if d.validate_for(&cell).is_ok() {
            prop_assert!(d.trials >= 2 && d.steps >= 2);
        }
    }

    /// A key that a configuration does not have is refused by name, at any depth.
    #[test]
    fn unknown_json_keys_are_named(key in "[a-z_]{1,12}", nested in any::<bool>()) {
        let mut v = serde_json::to_value(TrainConfig::default()).unwrap();
        let known = if nested { v["task"].as_object().unwrap().contains_key(&key) } else { v.as_object().unwrap().contains_key(&key) };
        prop_assume!(!known);
        if nested {
            v["task"][&key] = 1.into();
        } else {
            v[&key] = 1.into();
        }
        let e = from_json_strict::<TrainConfig>(&v.to_string()).unwrap_err();
        prop_assert!(e.contains(&key), "{}", e);
        let back: TrainConfig = from_json_strict(&serde_json::to_string(&TrainConfig::default()).unwrap()).unwrap();
        prop_assert_eq!(back, TrainConfig::default());
    }

    #[test]
    fn run_names_never_leave_the_folder(name in "[a-z./\\\\:-]{0,8}") {
        if limits::check_run_name(&name).is_ok() {
            let p = Path::new("out").join(&name);
            prop_assert_eq!(p.parent(), Some(Path::new("out")));
            prop_assert!(name != "." && name != ".." && !name.contains('/'));
        }
    }
}
