//! The reference against PyTorch: fixtures written by `tests/fixtures/make_fixtures.py`
//! from `torch.nn.RNN/GRU/LSTM` and their `Cell`s with autograd (never from memrnn).
//! f64 fixtures are checked against the f64 reference (relative error in norm < 1e-10),
//! f32 fixtures against the f32 reference (< 1e-5): every output (`h_seq`, `s_T`) and
//! every gradient (parameters, `x`, `s_0`) of a sequence, and the speed, its state and
//! parameter gradients and the one-step Jacobian (MATH.md §4). A PyTorch state dict saved
//! with `safetensors.torch.save_file` must load with `load_checkpoint` and compute what
//! torch computed.

use memrnn_core::checkpoint::{load_checkpoint, read_tensors, save_checkpoint, HostTensor};
use memrnn_core::{CellDims, CellKind, ParamBlock, Readout, Real, SeqShape, SeqUpstream};
use memrnn_cpu::reference;
use memrnn_testkit::{assert_close, rel_err_norm};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SCRIPT: &str = "tests/fixtures/make_fixtures.py";
const TOL_F64: f64 = 1e-10;
const TOL_F32: f64 = 1e-5;

// The cases the script writes (keep in sync with SEQ_SHAPES / SPEED_SHAPES there).
/// `(input, hidden, batch, steps)`.
const SEQ_SHAPES: [(usize, usize, usize, usize); 4] =
    [(1, 1, 1, 1), (5, 7, 3, 4), (9, 16, 5, 6), (3, 2, 4, 8)];
/// `(input, hidden, points)`.
const SPEED_SHAPES: [(usize, usize, usize); 2] = [(1, 1, 2), (5, 7, 4)];
const DTYPES: [&str; 2] = ["f64", "f32"];

const STATE_DICT: &str = "torch_gru_state_dict.safetensors";
const STATE_DICT_EXPECTED: &str = "torch_gru_state_dict_expected.safetensors";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn seq_name(kind: CellKind, (i, h, b, t): (usize, usize, usize, usize), dtype: &str) -> String {
    format!("{kind}_i{i}_h{h}_b{b}_t{t}_{dtype}.safetensors")
}

fn speed_name(kind: CellKind, (i, h, n): (usize, usize, usize), dtype: &str) -> String {
    format!("{kind}_speed_i{i}_h{h}_n{n}_{dtype}.safetensors")
}

/// One fixture file: its tensors (widened to f64 by `read_tensors`) and metadata.
struct Fixture {
    name: String,
    tensors: BTreeMap<String, HostTensor>,
    meta: BTreeMap<String, String>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let path = fixture_dir().join(name);
        if !path.exists() {
            panic!(
                "fixture {} is missing: regenerate the PyTorch fixtures with `python3 {SCRIPT}` \
                 (needs torch and safetensors) from the workspace root",
                path.display()
            );
        }
        let (tensors, meta) = read_tensors(&path).unwrap_or_else(|e| {
            panic!("cannot read fixture {name}: {e}; regenerate it with `python3 {SCRIPT}`")
        });
        Fixture {
            name: name.to_string(),
            tensors,
            meta,
        }
    }

    fn meta(&self, key: &str) -> &str {
        self.meta.get(key).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "fixture {} has no metadata {key:?}; regenerate it with `python3 {SCRIPT}`",
                self.name
            )
        })
    }

    fn meta_usize(&self, key: &str) -> usize {
        let v = self.meta(key);
        v.parse()
            .unwrap_or_else(|_| panic!("fixture {}: metadata {key}={v:?}", self.name))
    }

    fn seed(&self) -> u64 {
        self.meta
            .get("seed")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The tensor `key`, checked to have `shape`, as `T`.
    fn get<T: Real>(&self, key: &str, shape: &[usize]) -> Vec<T> {
        let t = self.tensors.get(key).unwrap_or_else(|| {
            panic!(
                "fixture {} has no tensor {key:?} (has {:?}); regenerate it with `python3 {SCRIPT}`",
                self.name,
                self.tensors.keys().collect::<Vec<_>>()
            )
        });
        assert_eq!(
            t.shape, shape,
            "fixture {}: tensor {key} has shape {:?}, expected {shape:?}",
            self.name, t.shape
        );
        t.data.iter().map(|&v| T::from_f64(v)).collect()
    }

    /// The flat parameters (`prefix` "") or their gradient (`prefix` "grad.") in
    /// `ParamLayout` order, from the PyTorch names.
    fn params<T: Real>(&self, cell: &CellDims, prefix: &str) -> Vec<T> {
        let layout = cell.layout();
        let mut flat = vec![T::zero(); layout.len()];
        for block in ParamBlock::ALL {
            let key = format!("{prefix}{}", block.torch_name());
            flat[layout.range(block)].copy_from_slice(&self.get::<T>(&key, &layout.shape(block)));
        }
        flat
    }

    fn cell(&self) -> CellDims {
        let kind: CellKind = self.meta("cell").parse().unwrap();
        CellDims::new(kind, self.meta_usize("input"), self.meta_usize("hidden")).unwrap()
    }
}

/// Worst relative errors seen, per quantity, printed at the end of each test.
#[derive(Default)]
struct Errors(BTreeMap<String, f64>);

impl Errors {
    /// Asserts `rel_err_norm(got, want) < tol` naming the fixture and the quantity, and
    /// records the error.
    #[track_caller]
    fn check<T: Real>(&mut self, fx: &Fixture, what: &str, got: &[T], want: &[T], tol: f64) {
        assert_eq!(got.len(), want.len(), "{}: {what}: lengths differ", fx.name);
        let label = format!(
            "{}: {what} (memrnn reference vs torch; fixtures from {SCRIPT})",
            fx.name
        );
        assert_close(&label, got, want, tol, fx.seed());
        let key = format!("{} {what}", fx.meta("dtype"));
        let e = self.0.entry(key).or_insert(0.0);
        *e = e.max(rel_err_norm(got, want));
    }

    fn report(&self, title: &str) {
        println!("{title}: worst relative errors in norm");
        for (k, v) in &self.0 {
            println!("  {k:<28} {v:.3e}");
        }
    }
}

fn check_seq<T: Real>(fx: &Fixture, tol: f64, errs: &mut Errors) {
    let cell = fx.cell();
    let (b, t) = (fx.meta_usize("batch"), fx.meta_usize("steps"));
    let shape = SeqShape::new(t, b).unwrap();
    let (i, h, s) = (cell.input, cell.hidden, cell.state_size());
    let params: Vec<T> = fx.params(&cell, "");
    let x: Vec<T> = fx.get("x", &[t, b, i]);
    let s0: Vec<T> = fx.get("s0", &[b, s]);
    let dh_seq: Vec<T> = fx.get("dh_seq", &[t, b, h]);
    let ds_final: Vec<T> = fx.get("ds_final", &[b, s]);

    let fwd = reference::seq_forward(&cell, &params, shape, &x, Some(&s0)).unwrap();
    errs.check(fx, "h_seq", &fwd.h_seq, &fx.get("h_seq", &[t, b, h]), tol);
    errs.check(
        fx,
        "s_final",
        &fwd.s_final,
        &fx.get("s_final", &[b, s]),
        tol,
    );

    let grads = reference::seq_backward(
        &cell,
        &params,
        shape,
        &x,
        &fwd,
        SeqUpstream {
            dh_seq: Some(&dh_seq),
            ds_final: Some(&ds_final),
        },
        true,
    )
    .unwrap();
    let layout = cell.layout();
    let want: Vec<T> = fx.params(&cell, "grad.");
    for block in ParamBlock::ALL {
        let r = layout.range(block);
        let what = format!("grad.{}", block.torch_name());
        errs.check(fx, &what, &grads.dparams[r.clone()], &want[r], tol);
    }
    errs.check(fx, "grad.s0", &grads.ds0, &fx.get("grad.s0", &[b, s]), tol);
    let dx = grads.dx.expect("dx was asked for");
    errs.check(fx, "grad.x", &dx, &fx.get("grad.x", &[t, b, i]), tol);

    // Skipping dx must not change the other gradients.
    let no_dx = reference::seq_backward(
        &cell,
        &params,
        shape,
        &x,
        &fwd,
        SeqUpstream {
            dh_seq: Some(&dh_seq),
            ds_final: Some(&ds_final),
        },
        false,
    )
    .unwrap();
    assert!(no_dx.dx.is_none(), "{}: dx returned unasked", fx.name);
    errs.check(fx, "grad.params (no dx)", &no_dx.dparams, &want, tol);
}

fn check_speed<T: Real>(fx: &Fixture, tol: f64, errs: &mut Errors) {
    let cell = fx.cell();
    let n = fx.meta_usize("points");
    let s = cell.state_size();
    let params: Vec<T> = fx.params(&cell, "");
    let states: Vec<T> = fx.get("states", &[n, s]);
    let x: Vec<T> = fx.get("x", &[n, cell.input]);
    let want_speed: Vec<T> = fx.get("speed", &[n]);

    let speed = reference::step_speed(&cell, &params, &states, &x, n).unwrap();
    errs.check(fx, "speed", &speed, &want_speed, tol);

    let reference::RefSpeedGrad {
        speed: speed2,
        dstate: dstates,
        dparams,
    } = reference::step_speed_grad(&cell, &params, &states, &x, n, true).unwrap();
    errs.check(fx, "speed (step_speed_grad)", &speed2, &want_speed, tol);
    errs.check(
        fx,
        "grad.states",
        &dstates,
        &fx.get("grad.states", &[n, s]),
        tol,
    );
    let dparams = dparams.expect("parameter gradient was asked for");
    let want: Vec<T> = fx.params(&cell, "grad.");
    let layout = cell.layout();
    for block in ParamBlock::ALL {
        let r = layout.range(block);
        let what = format!("speed grad.{}", block.torch_name());
        errs.check(fx, &what, &dparams[r.clone()], &want[r], tol);
    }
    let reference::RefSpeedGrad {
        dstate: dstates_only,
        dparams: none,
        ..
    } = reference::step_speed_grad(&cell, &params, &states, &x, n, false).unwrap();
    assert!(none.is_none(), "{}: parameter gradient unasked", fx.name);
    errs.check(
        fx,
        "grad.states (no params)",
        &dstates_only,
        &fx.get("grad.states", &[n, s]),
        tol,
    );

    let jac = reference::step_jacobian(&cell, &params, &states, &x, n).unwrap();
    errs.check(fx, "jacobian", &jac, &fx.get("jacobian", &[n, s, s]), tol);
}

fn check_fixture(fx: &Fixture, errs: &mut Errors) {
    let kind = fx.meta("memrnn_fixture");
    match (kind, fx.meta("dtype")) {
        ("seq", "f64") => check_seq::<f64>(fx, TOL_F64, errs),
        ("seq", "f32") => check_seq::<f32>(fx, TOL_F32, errs),
        ("speed", "f64") => check_speed::<f64>(fx, TOL_F64, errs),
        ("speed", "f32") => check_speed::<f32>(fx, TOL_F32, errs),
        (k, d) => panic!("fixture {}: unknown kind {k:?} / dtype {d:?}", fx.name),
    }
}

fn check_cell(kind: CellKind) {
    let mut errs = Errors::default();
    for dtype in DTYPES {
        for shape in SEQ_SHAPES {
            check_fixture(&Fixture::load(&seq_name(kind, shape, dtype)), &mut errs);
        }
        for shape in SPEED_SHAPES {
            check_fixture(&Fixture::load(&speed_name(kind, shape, dtype)), &mut errs);
        }
    }
    errs.report(&format!("{kind} vs torch"));
}

#[test]
fn rnn_matches_torch() {
    check_cell(CellKind::Rnn);
}

#[test]
fn gru_matches_torch() {
    check_cell(CellKind::Gru);
}

#[test]
fn lstm_matches_torch() {
    check_cell(CellKind::Lstm);
}

/// Every fixture the script wrote is one the tests above check: a case added to the
/// script but not here fails rather than going unchecked.
#[test]
fn every_fixture_is_checked() {
    let mut listed: BTreeSet<String> = [STATE_DICT, STATE_DICT_EXPECTED]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for kind in CellKind::ALL {
        for dtype in DTYPES {
            listed.extend(SEQ_SHAPES.iter().map(|&s| seq_name(kind, s, dtype)));
            listed.extend(SPEED_SHAPES.iter().map(|&s| speed_name(kind, s, dtype)));
        }
    }
    let dir = fixture_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot list {}: {e}; generate the fixtures with `python3 {SCRIPT}`",
            dir.display()
        )
    });
    let on_disk: BTreeSet<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    let missing: Vec<_> = listed.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "fixtures missing from {}: {missing:?}; regenerate them with `python3 {SCRIPT}`",
        dir.display()
    );
    let unchecked: Vec<_> = on_disk.difference(&listed).collect();
    assert!(
        unchecked.is_empty(),
        "fixtures in {} that no test checks: {unchecked:?}; list their shapes in \
         SEQ_SHAPES / SPEED_SHAPES of this test (they must match {SCRIPT})",
        dir.display()
    );
}

/// A user's `torch.nn.GRU(4, 6).state_dict()`, saved with `safetensors.torch.save_file`
/// (no metadata), loads as a GRU and computes what torch computed, in f32 and in f64.
#[test]
fn torch_state_dict_loads_and_matches() {
    let path = fixture_dir().join(STATE_DICT);
    let expected = Fixture::load(STATE_DICT_EXPECTED);
    let _ = Fixture::load(STATE_DICT); // the clear message when it is missing
    let ckpt = load_checkpoint(&path).unwrap();
    let model = &ckpt.model;
    assert_eq!(model.cell, CellDims::new(CellKind::Gru, 4, 6).unwrap());
    assert!(
        model.readout.is_none(),
        "a bare GRU state dict has no readout"
    );
    assert!(
        ckpt.metadata.is_empty(),
        "save_file wrote no metadata: {:?}",
        ckpt.metadata
    );

    // The parameters are the file's, in ParamLayout order, bit for bit.
    let (raw, _) = read_tensors(&path).unwrap();
    let layout = model.layout();
    for block in ParamBlock::ALL {
        let t = &raw[block.torch_name()];
        assert_eq!(t.shape, layout.shape(block), "{}", block.torch_name());
        assert_eq!(
            &model.params[layout.range(block)],
            &t.to_f32()[..],
            "{} loaded into the wrong place",
            block.torch_name()
        );
    }

    let (t, b, i, h) = (5, 2, 4, 6);
    let shape = SeqShape::new(t, b).unwrap();
    let cell = model.cell;
    let mut errs = Errors::default();
    let mut meta = expected.meta.clone();

    let x32: Vec<f32> = expected.get("x", &[t, b, i]);
    let fwd = reference::seq_forward(&cell, &model.params, shape, &x32, None).unwrap();
    meta.insert("dtype".into(), "f32".into());
    let fx32 = Fixture {
        name: STATE_DICT_EXPECTED.into(),
        tensors: expected.tensors.clone(),
        meta: meta.clone(),
    };
    errs.check(
        &fx32,
        "h_seq",
        &fwd.h_seq,
        &fx32.get("h_seq_f32", &[t, b, h]),
        TOL_F32,
    );
    errs.check(
        &fx32,
        "h_final",
        &fwd.s_final,
        &fx32.get("h_final_f32", &[b, h]),
        TOL_F32,
    );

    // torch's `.double()` widens the f32 weights exactly; so does this.
    let p64: Vec<f64> = model.params.iter().map(|&v| v as f64).collect();
    let x64: Vec<f64> = expected.get("x", &[t, b, i]);
    let fwd = reference::seq_forward(&cell, &p64, shape, &x64, None).unwrap();
    meta.insert("dtype".into(), "f64".into());
    let fx64 = Fixture {
        name: STATE_DICT_EXPECTED.into(),
        tensors: expected.tensors.clone(),
        meta,
    };
    errs.check(
        &fx64,
        "h_seq",
        &fwd.h_seq,
        &fx64.get("h_seq_f64", &[t, b, h]),
        TOL_F64,
    );
    errs.check(
        &fx64,
        "h_final",
        &fwd.s_final,
        &fx64.get("h_final_f64", &[b, h]),
        TOL_F64,
    );
    errs.report("torch GRU state dict");
}

/// memrnn saves the loaded PyTorch GRU back under PyTorch's names and shapes, and reads
/// it back unchanged. With `MEMRNN_ROUNDTRIP_OUT=<path>` it also writes the checkpoint
/// (with a readout) there, for `python3 tests/fixtures/make_fixtures.py --check-roundtrip
/// <path>` to load into `torch.nn.GRU` with `strict=True`.
#[test]
fn torch_state_dict_round_trips_through_memrnn() {
    let src = fixture_dir().join(STATE_DICT);
    let _ = Fixture::load(STATE_DICT);
    let mut model = load_checkpoint(&src).unwrap().model;
    let dir = std::env::temp_dir().join(format!("memrnn-reference-torch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("gru.safetensors");
    save_checkpoint(&out, &model, &BTreeMap::new()).unwrap();
    let (theirs, _) = read_tensors(&src).unwrap();
    let (ours, meta) = read_tensors(&out).unwrap();
    assert_eq!(
        theirs, ours,
        "memrnn must write PyTorch's names, shapes and values"
    );
    assert_eq!(meta.get("memrnn.cell").map(String::as_str), Some("gru"));
    assert_eq!(load_checkpoint(&out).unwrap().model, model);
    std::fs::remove_dir_all(&dir).ok();

    if let Some(path) = std::env::var_os("MEMRNN_ROUNDTRIP_OUT") {
        model.readout = Some(Readout::init(3, model.cell.hidden, 11).unwrap());
        let mut meta = BTreeMap::new();
        meta.insert("source".to_string(), STATE_DICT.to_string());
        save_checkpoint(Path::new(&path), &model, &meta).unwrap();
        println!(
            "wrote {}; check it with `python3 {SCRIPT} --check-roundtrip {}`",
            Path::new(&path).display(),
            Path::new(&path).display()
        );
    }
}
