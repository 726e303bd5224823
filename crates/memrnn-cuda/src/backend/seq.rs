//! The sequence operations' parts around their recurrences, shared by the single-network
//! operations and the ensemble overrides of [`CudaBackend`]: the argument checks and
//! buffers before the recurrence (`fwd_prepare`, `bwd_prepare`), the input products, and
//! the weight gradients after it (`bwd_finish`), the cuBLAS products batched over the
//! members (one member: plain SGEMMs).

use super::{dims, CudaBackend, CudaCache, CudaTensor, RoundedWeights};
use crate::blas::{gemm_rm_batched, Op, Operands};
use crate::device::{Buf, View};
use crate::ops::recurrence::{BwdBuffers, FwdBuffers, Weights};
use crate::ops::{small, spec};
use memrnn_core::{
    check_seq_backward, check_seq_forward, CellDims, ForwardInfo, ParamBlock, Precision, Result,
    SeqForward, SeqGrads, SeqShape, SeqUpstream, UpstreamLens,
};

/// A forward pass before its recurrence: `s_0` copied, `A` (for `X W_ihᵀ`, which
/// `input_products` writes) and the outputs allocated (NaN-poisoned when poisoning is on);
/// in half precision, `W_hh` rounded to the format (the recurrence reads it; the caller
/// checks its overflow flag after the recurrence).
pub(super) struct FwdPrep {
    pub(super) half: Option<RoundedWeights>,
    a: Buf<f32>,
    s0: Buf<f32>,
    h_seq: Buf<f32>,
    gates: Buf<f32>,
    c_seq: Buf<f32>,
    s_final: Buf<f32>,
}

impl FwdPrep {
    pub(super) fn buffers<'a>(&'a self, cell: &CellDims, params: &'a CudaTensor) -> FwdBuffers<'a> {
        let layout = cell.layout();
        let p = params.v();
        FwdBuffers {
            a: self.a.all(),
            w_hh: match &self.half {
                None => Weights::F32(p.sub(layout.range(ParamBlock::WeightHh))),
                Some(r) => Weights::Half(r.w.all()),
            },
            b_ih: p.sub(layout.range(ParamBlock::BiasIh)),
            b_hh: p.sub(layout.range(ParamBlock::BiasHh)),
            s0: self.s0.all(),
            h_seq: self.h_seq.all(),
            gates: self.gates.all(),
            c_seq: self.c_seq.all(),
            s_final: self.s_final.all(),
        }
    }
}

/// A backward pass before its recurrence: `W_hhᵀ` (in f32, or rounded to the half
/// format in `half`), the carried `D` (initialised with `dL/ds_T`), and the outputs
/// allocated.
pub(super) struct BwdPrep {
    w_t: TransposedWeights,
    dcarry: Buf<f32>,
    da: Buf<f32>,
    du: Option<Buf<f32>>,
    ds0: Buf<f32>,
}

/// `W_hhᵀ` as the backward recurrence reads it.
enum TransposedWeights {
    F32(Buf<f32>),
    /// Rounded to the backend's half format, with its overflow flag.
    Half(RoundedWeights),
}

impl BwdPrep {
    /// The rounded weights (and their overflow flag) in half precision.
    pub(super) fn half(&self) -> Option<&RoundedWeights> {
        match &self.w_t {
            TransposedWeights::Half(r) => Some(r),
            TransposedWeights::F32(_) => None,
        }
    }

    pub(super) fn buffers<'a>(
        &'a self,
        fwd: &'a SeqForward<CudaTensor, CudaCache>,
        upstream: SeqUpstream<'a, CudaTensor>,
    ) -> BwdBuffers<'a> {
        BwdBuffers {
            w_t: match &self.w_t {
                TransposedWeights::F32(w) => Weights::F32(w.all()),
                TransposedWeights::Half(r) => Weights::Half(r.w.all()),
            },
            h_seq: fwd.h_seq.buf.all(),
            gates: fwd.cache.gates.all(),
            c_seq: fwd.cache.c_seq.all(),
            s0: fwd.cache.s0.all(),
            dh_seq: upstream
                .dh_seq
                .map(|t| t.buf.all())
                .unwrap_or(self.dcarry.all()),
            d: self.dcarry.all(),
            da: self.da.all(),
            du: self.du.as_ref().unwrap_or(&self.da).all(),
            ds0: self.ds0.all(),
            has_dh: upstream.dh_seq.is_some() as i32,
        }
    }
}

impl CudaBackend {
    /// `seq_forward` up to its recurrence, but for the input product: the argument checks
    /// every backend shares and the buffers.
    pub(super) fn fwd_prepare(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        shape: SeqShape,
        x: &CudaTensor,
        s0: Option<&CudaTensor>,
    ) -> Result<FwdPrep> {
        check_seq_forward(cell, params.len, shape, x.len, s0.map(|s| s.len))?;
        dims(shape, cell)?;
        let sp = spec(cell.kind);
        let (b, h) = (shape.batch, cell.hidden);
        let (gh, s, rows) = (cell.gate_rows(), cell.state_size(), shape.rows());
        // A = X W_ihᵀ: filled by `input_products`.
        let a = self.out(rows * gh)?;
        let s0 = match s0 {
            Some(s0) => self.copy_of(s0.v(), b * s)?,
            None => self.zeros_buf(b * s)?,
        };
        let half = match self.precision {
            Precision::F32 => None,
            _ => Some(self.half_recurrent(cell, params.v(), false)?),
        };
        Ok(FwdPrep {
            half,
            a,
            s0,
            h_seq: self.out(rows * h)?,
            gates: self.out(rows * sp.ncache * h)?,
            c_seq: self.out(if cell.kind.state_parts() == 2 {
                rows * h
            } else {
                1
            })?,
            s_final: self.out(b * s)?,
        })
    }

    /// `A = X W_ihᵀ` over all `T·B` rows for every `(params, x, prep)`, in one (batched)
    /// cuBLAS call; the biases are added in the gate kernels.
    pub(super) fn input_products(
        &self,
        cell: &CellDims,
        shape: SeqShape,
        members: &[(&CudaTensor, &CudaTensor, &FwdPrep)],
    ) -> Result<()> {
        let layout = cell.layout();
        let (i, gh) = (cell.input, cell.gate_rows());
        let ops: Vec<Operands<'_>> = members
            .iter()
            .map(|(params, x, prep)| Operands {
                a: x.v(),
                b: params.v().sub(layout.range(ParamBlock::WeightIh)),
                c: prep.a.all(),
            })
            .collect();
        gemm_rm_batched(
            &self.dev,
            shape.rows(),
            gh,
            i,
            Op::n(i),
            Op::t(i),
            0.0,
            &ops,
        )
    }

    pub(super) fn fwd_finish(
        &self,
        cell: &CellDims,
        shape: SeqShape,
        prep: FwdPrep,
    ) -> SeqForward<CudaTensor, CudaCache> {
        let (rows, h) = (shape.rows(), cell.hidden);
        SeqForward {
            h_seq: self.tensor(prep.h_seq, rows * h),
            s_final: self.tensor(prep.s_final, shape.batch * cell.state_size()),
            cache: CudaCache {
                cell: *cell,
                shape,
                s0: prep.s0,
                gates: prep.gates,
                c_seq: prep.c_seq,
            },
        }
    }

    /// `seq_backward` up to its recurrence: the shared argument checks, `W_hhᵀ` and the
    /// buffers.
    pub(super) fn bwd_prepare(
        &self,
        cell: &CellDims,
        params: &CudaTensor,
        shape: SeqShape,
        x: &CudaTensor,
        fwd: &SeqForward<CudaTensor, CudaCache>,
        upstream: SeqUpstream<'_, CudaTensor>,
    ) -> Result<BwdPrep> {
        check_seq_backward(
            cell,
            params.len,
            shape,
            x.len,
            &ForwardInfo {
                cell: fwd.cache.cell,
                shape: fwd.cache.shape,
                h_seq: fwd.h_seq.len,
                s_final: fwd.s_final.len,
            },
            UpstreamLens {
                dh_seq: upstream.dh_seq.map(|t| t.len),
                ds_final: upstream.ds_final.map(|t| t.len),
            },
        )?;
        dims(shape, cell)?;
        let layout = cell.layout();
        let sp = spec(cell.kind);
        let (b, h) = (shape.batch, cell.hidden);
        let (gh, s, rows) = (cell.gate_rows(), cell.state_size(), shape.rows());
        // W_hhᵀ [H, G·H]: the backward product reads columns of W_hh as contiguous rows
        // (rounded to the storage format on the way, in half precision).
        let w_t = match self.precision {
            Precision::F32 => {
                let w_t = self.out(gh * h)?;
                small::transpose(
                    &self.dev,
                    params.v().sub(layout.range(ParamBlock::WeightHh)),
                    gh,
                    h,
                    w_t.all(),
                )?;
                TransposedWeights::F32(w_t)
            }
            _ => TransposedWeights::Half(self.half_recurrent(cell, params.v(), true)?),
        };
        let dcarry = match upstream.ds_final {
            Some(ds) => self.copy_of(ds.v(), b * s)?,
            None => self.zeros_buf(b * s)?,
        };
        Ok(BwdPrep {
            w_t,
            dcarry,
            da: self.out(rows * gh)?,
            du: if sp.separate_du {
                Some(self.out(rows * gh)?)
            } else {
                None
            },
            ds0: self.out(b * s)?,
        })
    }

    /// `seq_backward` after its recurrence, for every member at once: weight gradients over
    /// all `T·B` rows (one batched cuBLAS call per product), bias gradients by column sums,
    /// and `dx` when asked.
    pub(super) fn bwd_finish(
        &self,
        cell: &CellDims,
        shape: SeqShape,
        members: Vec<BwdFinish<'_>>,
        want_dx: bool,
    ) -> Result<Vec<SeqGrads<CudaTensor>>> {
        let layout = cell.layout();
        let (t, b, i, h) = (shape.steps, shape.batch, cell.input, cell.hidden);
        let (gh, s, rows) = (cell.gate_rows(), cell.state_size(), shape.rows());
        let dev = &self.dev;
        let mut dparams = Vec::with_capacity(members.len());
        for _ in &members {
            dparams.push(self.out(layout.len())?);
        }
        let ih = layout.range(ParamBlock::WeightIh);
        let hh = layout.range(ParamBlock::WeightHh);
        let pairs = || members.iter().zip(&dparams);
        // dW_ih = dAᵀ X.
        let ops: Vec<Operands<'_>> = pairs()
            .map(|(m, d)| Operands {
                a: m.prep.da.all(),
                b: m.x.v(),
                c: d.view(ih.clone()),
            })
            .collect();
        gemm_rm_batched(dev, gh, i, rows, Op::t(gh), Op::n(i), 0.0, &ops)?;
        // dW_hh: step 0 against s_0's h part (row stride S), steps 1.. against h_seq.
        let ops: Vec<Operands<'_>> = pairs()
            .map(|(m, d)| Operands {
                a: m.du().sub(0..b * gh),
                b: m.fwd.cache.s0.all(),
                c: d.view(hh.clone()),
            })
            .collect();
        gemm_rm_batched(dev, gh, h, b, Op::t(gh), Op::n(s), 0.0, &ops)?;
        if t > 1 {
            let ops: Vec<Operands<'_>> = pairs()
                .map(|(m, d)| Operands {
                    a: m.du().sub(b * gh..rows * gh),
                    b: m.fwd.h_seq.buf.view(0..(t - 1) * b * h),
                    c: d.view(hh.clone()),
                })
                .collect();
            gemm_rm_batched(dev, gh, h, (t - 1) * b, Op::t(gh), Op::n(h), 1.0, &ops)?;
        }
        for (m, d) in members.iter().zip(&dparams) {
            small::col_sum(
                dev,
                m.prep.da.view(0..rows * gh),
                rows,
                gh,
                d.view(layout.range(ParamBlock::BiasIh)),
            )?;
            small::col_sum(
                dev,
                m.du().sub(0..rows * gh),
                rows,
                gh,
                d.view(layout.range(ParamBlock::BiasHh)),
            )?;
        }
        let dxs = if want_dx {
            let mut dxs = Vec::with_capacity(members.len());
            for _ in &members {
                dxs.push(self.out(rows * i)?);
            }
            let ops: Vec<Operands<'_>> = members
                .iter()
                .zip(&dxs)
                .map(|(m, dx)| Operands {
                    a: m.prep.da.all(),
                    b: m.params.v().sub(layout.range(ParamBlock::WeightIh)),
                    c: dx.all(),
                })
                .collect();
            gemm_rm_batched(dev, rows, i, gh, Op::n(gh), Op::n(i), 0.0, &ops)?;
            dxs.into_iter().map(Some).collect()
        } else {
            members.iter().map(|_| None).collect::<Vec<_>>()
        };
        Ok(members
            .into_iter()
            .zip(dparams)
            .zip(dxs)
            .map(|((m, dp), dx)| SeqGrads {
                dparams: self.tensor(dp, layout.len()),
                ds0: self.tensor(m.prep.ds0, b * s),
                dx: dx.map(|dx| self.tensor(dx, rows * i)),
            })
            .collect())
    }
}

/// One member's part of [`CudaBackend::bwd_finish`].
pub(super) struct BwdFinish<'a> {
    pub params: &'a CudaTensor,
    pub x: &'a CudaTensor,
    pub fwd: &'a SeqForward<CudaTensor, CudaCache>,
    pub prep: BwdPrep,
}

impl BwdFinish<'_> {
    /// dL/dU: its own buffer, or dA's where the cell's da == du.
    fn du(&self) -> View<'_, f32> {
        self.prep.du.as_ref().unwrap_or(&self.prep.da).all()
    }
}
