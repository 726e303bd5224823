//! Half-precision PyTorch state dicts (`torch.nn.LSTM(3, 5).to(torch.float16 /
//! torch.bfloat16).state_dict()` saved with `safetensors.torch.save_file`, written by
//! `tests/fixtures/half/make_half_fixtures.py`) load into f32 master weights exactly
//! (every f16 and bf16 value is an f32), compute what PyTorch's f32 LSTM computes with
//! those weights, and run unchanged with `W_hh` stored in the file's own precision (the
//! storage is exact for weights that came from it).

use memrnn_core::checkpoint::{load_checkpoint, read_tensors, HostTensor};
use memrnn_core::{Backend, CellDims, CellKind, ParamBlock, Precision, SeqShape};
use memrnn_cpu::{reference, CpuBackend, PanelFormat};
use memrnn_testkit::assert_close;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SCRIPT: &str = "tests/fixtures/half/make_half_fixtures.py";

fn fixture(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/half")
        .join(name);
    assert!(
        p.is_file(),
        "fixture {} is missing: regenerate it with `python3 {SCRIPT}` (needs torch and \
         safetensors)",
        p.display()
    );
    p
}

fn tensor<'a>(t: &'a BTreeMap<String, HostTensor>, name: &str) -> &'a HostTensor {
    t.get(name)
        .unwrap_or_else(|| panic!("the expected file has no {name}: rerun `python3 {SCRIPT}`"))
}

fn check(tag: &str, precision: Precision) {
    let ckpt = load_checkpoint(&fixture(&format!("lstm_{tag}.safetensors"))).unwrap();
    let (expected, _) =
        read_tensors(&fixture(&format!("lstm_{tag}_expected.safetensors"))).unwrap();
    let model = &ckpt.model;
    let cell = CellDims::new(CellKind::Lstm, 3, 5).unwrap();
    assert_eq!(model.cell, cell, "{tag}");
    // The half values, widened exactly, in ParamLayout order.
    let layout = model.layout();
    for block in ParamBlock::ALL {
        let want = tensor(&expected, block.torch_name()).to_f32();
        assert_eq!(
            &model.params[layout.range(block)],
            &want[..],
            "{tag}: {} was not widened exactly into its place",
            block.torch_name()
        );
    }
    let (t, b) = (4, 2);
    let shape = SeqShape::new(t, b).unwrap();
    let x = tensor(&expected, "x").to_f32();
    let fwd = reference::seq_forward(&cell, &model.params, shape, &x, None).unwrap();
    let h_seq = &tensor(&expected, "h_seq").data;
    assert_close(&format!("{tag}: h_seq"), &fwd.h_seq, h_seq, 1e-5, 0);
    let mut s_final = Vec::new();
    let (hf, cf) = (
        &tensor(&expected, "h_final").data,
        &tensor(&expected, "c_final").data,
    );
    for r in 0..b {
        s_final.extend_from_slice(&hf[r * 5..(r + 1) * 5]);
        s_final.extend_from_slice(&cf[r * 5..(r + 1) * 5]);
    }
    assert_close(&format!("{tag}: s_final"), &fwd.s_final, &s_final, 1e-5, 0);

    // Stored in its own precision, W_hh is exact: the half backend (its half-width panels)
    // equals the f32 one.
    let run = |p: Precision| {
        let be = CpuBackend::new()
            .with_precision(p)
            .with_panel_format(PanelFormat::Storage);
        let f = be
            .seq_forward(&cell, &model.params, shape, &x, None)
            .unwrap();
        (f.h_seq, f.s_final)
    };
    assert_eq!(run(precision), run(Precision::F32), "{tag}");
}

#[test]
fn torch_f16_state_dict_loads_into_f32_master_weights() {
    check("f16", Precision::F16);
}

#[test]
fn torch_bf16_state_dict_loads_into_f32_master_weights() {
    check("bf16", Precision::Bf16);
}
