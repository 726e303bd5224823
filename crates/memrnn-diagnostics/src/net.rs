//! A network on a backend, with host-side helpers: one step, full-state trajectories,
//! batched Jacobian–vector and vector–Jacobian products.

use memrnn_core::{check_len, Backend, CellDims, Model, Result, SeqShape, SeqUpstream};

/// A recurrent layer uploaded to a backend. Every helper takes and returns host `f32`
/// slices in the layouts of [`memrnn_core::backend`]: states `[N, S]` (`S = H`, or `2H`
/// for the LSTM, rows `[h | c]`), inputs `[N, I]`, sequences time-major `[T, B, ·]`.
pub struct Net<'a, B: Backend> {
    pub backend: &'a B,
    pub cell: CellDims,
    pub params: B::Tensor,
}

impl<'a, B: Backend> Net<'a, B> {
    /// Validates `model` (lengths, finiteness) and uploads its recurrent parameters.
    pub fn new(backend: &'a B, model: &Model) -> Result<Self> {
        model.validate()?;
        Ok(Net {
            backend,
            cell: model.cell,
            params: backend.upload(&model.params)?,
        })
    }

    /// The map `s ↦ F(s, x̄)` as a network of its own: the constant input's product
    /// `W_ih x̄` is folded into `b_ih` (summed in f64, rounded once), and the folded
    /// network has one input, always zero. Every input enters the pre-activations
    /// additively beside `b_ih` (the GRU's too: `W_in x + b_in` sits outside the reset
    /// gate), so this is the same map up to f32 rounding of that sum, and a step costs
    /// the recurrent product only, not the `[N, I] × [I, G·H]` input product: on a
    /// 785-input task network that is most of the work of a long autonomous run.
    /// Feed it [`Net::FOLDED_INPUT`].
    pub fn with_constant_input(&self, x_const: &[f32]) -> Result<Net<'a, B>> {
        check_len("constant input", self.cell.input, x_const.len(), || {
            format!("[I={}]", self.cell.input)
        })?;
        memrnn_core::check_finite("constant input", x_const)?;
        let flat = self.backend.download(&self.params)?;
        let v = self.cell.layout().split(&flat);
        let folded_cell = CellDims::new(self.cell.kind, 1, self.cell.hidden)?;
        let gh = self.cell.gate_rows();
        let mut out = Vec::with_capacity(folded_cell.layout().len());
        out.resize(gh, 0.0); // W_ih [G·H, 1] = 0
        out.extend_from_slice(v.w_hh);
        out.extend(
            v.w_ih
                .chunks_exact(self.cell.input)
                .zip(v.b_ih)
                .map(|(row, &b)| {
                    let dot: f64 = row
                        .iter()
                        .zip(x_const)
                        .map(|(&w, &x)| w as f64 * x as f64)
                        .sum();
                    (b as f64 + dot) as f32
                }),
        );
        out.extend_from_slice(v.b_hh);
        folded_cell.layout().check("folded parameters", out.len())?;
        Ok(Net {
            backend: self.backend,
            cell: folded_cell,
            params: self.backend.upload(&out)?,
        })
    }

    /// The input a network from [`Net::with_constant_input`] runs on.
    pub const FOLDED_INPUT: [f32; 1] = [0.0];

    /// `S`.
    pub fn state_size(&self) -> usize {
        self.cell.state_size()
    }

    fn check_rows(&self, what: &str, data: &[f32], n: usize, width: usize) -> Result<()> {
        check_len(what, n * width, data.len(), || format!("[N={n}, {width}]"))
    }

    /// `F(s_n, x_n)` for `N` rows: full states `[N, S]`.
    pub fn step(&self, states: &[f32], x: &[f32], n: usize) -> Result<Vec<f32>> {
        self.check_rows("states", states, n, self.state_size())?;
        let be = self.backend;
        let shape = SeqShape::new(1, n)?;
        let f = be.seq_forward(
            &self.cell,
            &self.params,
            shape,
            &be.upload(x)?,
            Some(&be.upload(states)?),
        )?;
        be.download(&f.s_final)
    }

    /// `J_n v_n` at `N` rows (the backend's `step_jvp`).
    pub fn jvp(&self, states: &[f32], x: &[f32], v: &[f32], n: usize) -> Result<Vec<f32>> {
        let be = self.backend;
        let out = be.step_jvp(
            &self.cell,
            &self.params,
            &be.upload(states)?,
            &be.upload(x)?,
            &be.upload(v)?,
            n,
        )?;
        be.download(&out)
    }

    /// `J_nᵀ u_n` at `N` rows: backpropagation through one step with `∂L/∂s_1 = u`.
    pub fn vjp(&self, states: &[f32], x: &[f32], u: &[f32], n: usize) -> Result<Vec<f32>> {
        let sd = self.state_size();
        self.check_rows("states", states, n, sd)?;
        self.check_rows("u", u, n, sd)?;
        let be = self.backend;
        let shape = SeqShape::new(1, n)?;
        let xt = be.upload(x)?;
        let fwd = be.seq_forward(
            &self.cell,
            &self.params,
            shape,
            &xt,
            Some(&be.upload(states)?),
        )?;
        let ut = be.upload(u)?;
        let up = SeqUpstream {
            dh_seq: None,
            ds_final: Some(&ut),
        };
        let g = be.seq_backward(&self.cell, &self.params, shape, &xt, &fwd, up, false)?;
        be.download(&g.ds0)
    }

    /// The full states along sequences `x [T, B, I]` from `s0 [B, S]` (zeros when
    /// `None`): `[T + 1, B, S]`, `s_0` first. RNN and GRU states come from one forward
    /// pass; the LSTM's (whose `c_t` a forward pass does not return) one step at a time.
    pub fn trajectory(&self, x: &[f32], shape: SeqShape, s0: Option<&[f32]>) -> Result<Vec<f32>> {
        let (sd, id, b) = (self.state_size(), self.cell.input, shape.batch);
        shape.check_inputs(&self.cell, x.len(), s0.map(<[f32]>::len))?;
        let mut out = Vec::with_capacity((shape.steps + 1) * b * sd);
        match s0 {
            Some(s) => out.extend_from_slice(s),
            None => out.resize(b * sd, 0.0),
        }
        if sd == self.cell.hidden {
            let be = self.backend;
            let s0t = be.upload(&out)?;
            let f = be.seq_forward(&self.cell, &self.params, shape, &be.upload(x)?, Some(&s0t))?;
            out.extend(be.download(&f.h_seq)?);
        } else {
            for t in 0..shape.steps {
                let s = out[t * b * sd..(t + 1) * b * sd].to_vec();
                let next = self.step(&s, &x[t * b * id..(t + 1) * b * id], b)?;
                out.extend(next);
            }
        }
        Ok(out)
    }

    /// The state after `steps` steps under the constant input `x_const [I]` from
    /// `s0 [B, S]`, run in chunks so that memory does not grow with `steps`.
    pub fn run_constant(
        &self,
        x_const: &[f32],
        s0: &[f32],
        batch: usize,
        steps: usize,
    ) -> Result<Vec<f32>> {
        check_len("constant input", self.cell.input, x_const.len(), || {
            format!("[I={}]", self.cell.input)
        })?;
        self.check_rows("s0", s0, batch, self.state_size())?;
        const CHUNK: usize = 256;
        let be = self.backend;
        let make = |t: usize| -> Result<B::Tensor> {
            let host: Vec<f32> = (0..t * batch)
                .flat_map(|_| x_const.iter().copied())
                .collect();
            be.upload(&host)
        };
        let run = |t: usize, xt: &B::Tensor, s: &B::Tensor| -> Result<B::Tensor> {
            let shape = SeqShape::new(t, batch)?;
            Ok(be
                .seq_forward(&self.cell, &self.params, shape, xt, Some(s))?
                .s_final)
        };
        let mut s = be.upload(s0)?;
        let (n_full, rem) = (steps / CHUNK, steps % CHUNK);
        if n_full > 0 {
            let xt = make(CHUNK)?;
            for _ in 0..n_full {
                s = run(CHUNK, &xt, &s)?;
            }
        }
        if rem > 0 {
            s = run(rem, &make(rem)?, &s)?;
        }
        be.download(&s)
    }
}
