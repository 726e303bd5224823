//! `readout_ce` against the f64 reference (`memrnn_cpu::reference::readout`, itself checked
//! against finite differences): loss, accuracy counts, `∂L/∂h` and `∂L/∂readout`, at one
//! row, one class, odd sizes, more rows than a warp's worth of blocks, zero weights; zero
//! rows; and a target that is not a class (NaN loss on every backend).

use super::{f64s, Cx, TOL};
use crate::{rng, uniform};
use memrnn_core::{Backend, CeStat, CE_STATS};
use memrnn_cpu::reference::readout::readout_ce as reference;
use rand::RngExt;

/// `(hidden, classes, rows)`: ones, the task's 11 classes, odd sizes off every tile, a
/// full warp of classes.
const CASES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (1, 11, 3),
    (7, 11, 37),
    (33, 11, 130),
    (70, 3, 9),
    (5, 32, 17),
];

/// Rows whose two largest logits (in f64) are within `gap`: their argmax may differ in
/// f32, so the accuracy counts may differ by that many.
fn near_ties(hidden: usize, classes: usize, h: &[f64], ro: &[f64], gap: f64) -> usize {
    let (w, b) = ro.split_at(classes * hidden);
    h.chunks(hidden)
        .filter(|hr| {
            let mut y: Vec<f64> = (0..classes)
                .map(|c| b[c] + (0..hidden).map(|j| w[c * hidden + j] * hr[j]).sum::<f64>())
                .collect();
            y.sort_by(|a, b| b.total_cmp(a));
            y.len() > 1 && y[0] - y[1] < gap
        })
        .count()
}

pub fn matches_reference<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(41);
    for (k, &(hidden, classes, rows)) in CASES.iter().enumerate() {
        let s = seed.wrapping_add(k as u64);
        let mut r = rng(s);
        let what = format!("readout_ce H={hidden} C={classes} rows={rows}");
        let h: Vec<f32> = uniform(&mut r, rows * hidden, -1.0, 1.0);
        let ro: Vec<f32> = uniform(&mut r, classes * hidden + classes, -1.5, 1.5);
        let targets: Vec<usize> = (0..rows).map(|_| r.random_range(0..classes)).collect();
        // Weights as the task's: mostly 1, some heavier (report steps), some 0.
        let weights: Vec<f32> = (0..rows)
            .map(|_| match r.random_range(0..6) {
                0 => 0.0,
                1 => 19.0,
                _ => 1.0,
            })
            .collect();
        let tf: Vec<f32> = targets.iter().map(|&t| t as f32).collect();
        let got = cx.ok(
            &what,
            cx.b.readout_ce(
                hidden,
                classes,
                &cx.up(&h),
                &cx.up(&ro),
                &cx.up(&tf),
                &cx.up(&weights),
            ),
        );
        let (h64, ro64, w64) = (f64s(&h), f64s(&ro), f64s(&weights));
        let want = reference(hidden, classes, &h64, &ro64, &targets, &w64);
        cx.close(format!("{what}: dh"), &cx.down(&got.dh), &want.dh, TOL, s);
        cx.close(
            format!("{what}: dreadout"),
            &cx.down(&got.dreadout),
            &want.dreadout,
            TOL,
            s,
        );
        let stats = cx.down(&got.stats);
        assert_eq!(stats.len(), CE_STATS, "{}", cx.what(&what));
        cx.close(format!("{what}: loss"), &stats[..1], &[want.loss], TOL, s);
        let ties = near_ties(hidden, classes, &h64, &ro64, 1e-3) as f32;
        let slots = [
            CeStat::ReportCorrect,
            CeStat::ReportTotal,
            CeStat::SilenceCorrect,
            CeStat::SilenceTotal,
        ];
        for (slot, &count) in slots.iter().zip(&want.counts) {
            let v = stats[*slot as usize];
            assert!(
                v.fract() == 0.0 && (v - count as f32).abs() <= ties,
                "{}",
                cx.what(format!(
                    "{what}: {slot:?} is {v}, the reference counts {count} ({ties} near ties; seed {s})"
                ))
            );
        }
        let totals = stats[CeStat::ReportTotal as usize] + stats[CeStat::SilenceTotal as usize];
        assert_eq!(
            totals,
            rows as f32,
            "{}",
            cx.what(format!("{what}: row totals"))
        );
    }
}

pub fn edge_cases<B: Backend>(cx: &Cx<'_, B>) {
    let (hidden, classes) = (5, 11);
    // Zero rows: zero loss, zero gradients.
    let empty = cx.ok(
        "readout_ce with 0 rows",
        cx.b.readout_ce(
            hidden,
            classes,
            &cx.zeros(0),
            &cx.up(&vec![0.5; classes * hidden + classes]),
            &cx.zeros(0),
            &cx.zeros(0),
        ),
    );
    assert!(cx.down(&empty.dh).is_empty(), "{}", cx.what("0 rows: dh"));
    assert!(
        cx.down(&empty.dreadout) == vec![0.0; classes * hidden + classes],
        "{}",
        cx.what("0 rows: dreadout is not zeros")
    );
    assert!(
        cx.down(&empty.stats) == vec![0.0; CE_STATS],
        "{}",
        cx.what("0 rows: stats are not zeros")
    );
    // A target that is not a class id: the loss says so.
    let mut r = rng(cx.seed(43));
    let rows = 4;
    let h: Vec<f32> = uniform(&mut r, rows * hidden, -1.0, 1.0);
    let ro: Vec<f32> = uniform(&mut r, classes * hidden + classes, -1.0, 1.0);
    for bad in [11.0f32, -1.0, 2.5, f32::NAN] {
        let got = cx.ok(
            format!("readout_ce with target {bad}"),
            cx.b.readout_ce(
                hidden,
                classes,
                &cx.up(&h),
                &cx.up(&ro),
                &cx.up(&[1.0, bad, 0.0, 3.0]),
                &cx.up(&[1.0; 4]),
            ),
        );
        let loss = cx.down(&got.stats)[CeStat::Loss as usize];
        assert!(
            loss.is_nan(),
            "{}",
            cx.what(format!("target {bad}: loss {loss}, expected NaN"))
        );
    }
}

/// The f64 logits `b_c + Σ_j W_cj h_j` of each row.
fn logits64(hidden: usize, classes: usize, h: &[f64], ro: &[f64]) -> Vec<Vec<f64>> {
    let (w, b) = ro.split_at(classes * hidden);
    h.chunks(hidden)
        .map(|hr| {
            (0..classes)
                .map(|c| b[c] + (0..hidden).map(|j| w[c * hidden + j] * hr[j]).sum::<f64>())
                .collect()
        })
        .collect()
}

/// Runs `readout_argmax` and checks it returns one whole class id in `0..classes` a row.
fn argmax<B: Backend>(
    cx: &Cx<'_, B>,
    what: &str,
    hidden: usize,
    classes: usize,
    h: &[f32],
    ro: &[f32],
) -> Vec<usize> {
    let got = cx.ok(
        what,
        cx.b.readout_argmax(hidden, classes, &cx.up(h), &cx.up(ro)),
    );
    let got = cx.down(&got);
    assert_eq!(
        got.len(),
        h.len() / hidden,
        "{}",
        cx.what(format!("{what}: one answer a row"))
    );
    got.iter()
        .enumerate()
        .map(|(r, &v)| {
            assert!(
                v.fract() == 0.0 && v >= 0.0 && (v as usize) < classes,
                "{}",
                cx.what(format!(
                    "{what}: row {r} answers {v}, not a class in 0..{classes}"
                ))
            );
            v as usize
        })
        .collect()
}

/// `readout_argmax` against the f64 logits: each row's answer is the f64 argmax, or
/// within `1e-3` of the largest logit where two are that close (f32 may order them
/// either way).
pub fn argmax_matches_reference<B: Backend>(cx: &Cx<'_, B>) {
    let seed = cx.seed(47);
    for (k, &(hidden, classes, rows)) in CASES.iter().enumerate() {
        let s = seed.wrapping_add(k as u64);
        let mut r = rng(s);
        let what = format!("readout_argmax H={hidden} C={classes} rows={rows}");
        let h: Vec<f32> = uniform(&mut r, rows * hidden, -1.0, 1.0);
        let ro: Vec<f32> = uniform(&mut r, classes * hidden + classes, -1.5, 1.5);
        let got = argmax(cx, &what, hidden, classes, &h, &ro);
        for (row, (y, &g)) in logits64(hidden, classes, &f64s(&h), &f64s(&ro))
            .iter()
            .zip(&got)
            .enumerate()
        {
            let best = (0..classes).fold(0, |a, c| if y[c] > y[a] { c } else { a });
            assert!(
                g == best || y[g] >= y[best] - 1e-3,
                "{}",
                cx.what(format!(
                    "{what}: row {row} answers {g} (logit {}), the f64 argmax is {best} ({}); seed {s}",
                    y[g], y[best]
                ))
            );
        }
    }
}

/// Zero rows; exact ties (the first class wins); NaN logits (never win; an all-NaN row
/// answers 0); infinite logits; one class.
pub fn argmax_edge_cases<B: Backend>(cx: &Cx<'_, B>) {
    let (hidden, classes) = (5, 11);
    let mut r = rng(cx.seed(53));
    let ro: Vec<f32> = uniform(&mut r, classes * hidden + classes, -1.0, 1.0);
    let empty = cx.ok(
        "readout_argmax with 0 rows",
        cx.b.readout_argmax(hidden, classes, &cx.zeros(0), &cx.up(&ro)),
    );
    assert!(cx.down(&empty).is_empty(), "{}", cx.what("0 rows: output"));
    let rows = 9;
    let h: Vec<f32> = uniform(&mut r, rows * hidden, -1.0, 1.0);
    let ch = classes * hidden;
    // Classes 3 and 7 share their weights and a bias far above the rest: 3 wins.
    let mut tie = ro.clone();
    let w3 = tie[3 * hidden..4 * hidden].to_vec();
    tie[7 * hidden..8 * hidden].copy_from_slice(&w3);
    tie[ch + 3] = 100.0;
    tie[ch + 7] = 100.0;
    let got = argmax(cx, "exact ties", hidden, classes, &h, &tie);
    assert!(
        got.iter().all(|&g| g == 3),
        "{}",
        cx.what(format!("ties: {got:?}"))
    );
    // Class 0's bias NaN, classes 2 and 5 at +inf: 2 everywhere.
    let mut inf = ro.clone();
    inf[ch] = f32::NAN;
    inf[ch + 2] = f32::INFINITY;
    inf[ch + 5] = f32::INFINITY;
    let got = argmax(cx, "NaN and +inf logits", hidden, classes, &h, &inf);
    assert!(
        got.iter().all(|&g| g == 2),
        "{}",
        cx.what(format!("+inf: {got:?}"))
    );
    // Class 0 NaN alone: the argmax of the others.
    let mut nan0 = ro.clone();
    nan0[ch] = f32::NAN;
    let got = argmax(cx, "a NaN logit", hidden, classes, &h, &nan0);
    for (row, (y, &g)) in logits64(hidden, classes, &f64s(&h), &f64s(&nan0))
        .iter()
        .zip(&got)
        .enumerate()
    {
        let best = (1..classes).fold(1, |a, c| if y[c] > y[a] { c } else { a });
        assert!(
            g == best || (g != 0 && y[g] >= y[best] - 1e-3),
            "{}",
            cx.what(format!(
                "NaN class 0: row {row} answers {g}, expected {best}"
            ))
        );
    }
    // Every bias −inf, or a NaN state: nothing above −inf, the answer is 0.
    let mut ninf = ro.clone();
    ninf[ch..].iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
    let got = argmax(cx, "all logits -inf", hidden, classes, &h, &ninf);
    assert!(
        got.iter().all(|&g| g == 0),
        "{}",
        cx.what(format!("-inf: {got:?}"))
    );
    let mut hn = h.clone();
    hn[2 * hidden..3 * hidden]
        .iter_mut()
        .for_each(|v| *v = f32::NAN);
    let got = argmax(cx, "a NaN state", hidden, classes, &hn, &ro);
    assert_eq!(got[2], 0, "{}", cx.what("a NaN state answers 0"));
    // One class: always 0.
    let got = argmax(cx, "one class", hidden, 1, &h, &ro[..hidden + 1]);
    assert!(
        got.iter().all(|&g| g == 0),
        "{}",
        cx.what(format!("C=1: {got:?}"))
    );
    // h not a whole number of rows: a shape error naming h.
    match cx
        .b
        .readout_argmax(hidden, classes, &cx.up(&h[..hidden + 2]), &cx.up(&ro))
    {
        Err(memrnn_core::Error::Shape { what, .. }) => {
            assert_eq!(what, "h", "{}", cx.what("partial row"))
        }
        other => panic!(
            "{}",
            cx.what(format!(
                "a partial row of h: expected a shape error, got {:?}",
                other.map(|_| ())
            ))
        ),
    }
}
