//! memrnn-slowpoints: batched slow-point search (MATH.md §4; Haviv, Rivkind & Barak,
//! ICML 2019; Golub & Sussillo's FixedPointFinder, 2018), generic over
//! [`Backend`](memrnn_core::Backend).
//!
//! # What it does
//!
//! For a model (a cell with its parameters and, optionally, its readout), a constant
//! input `x̄` (for the delayed-classification task: every pixel at the noise mean,
//! trigger 0) and `K` candidate states, [`find_slow_points`]:
//!
//! 1. **searches** every candidate at once, each on its own, inside the backend, with the
//!    method [`FinderConfig::method`] chooses:
//!    - [`SearchMethod::Lm`] (the default): Levenberg–Marquardt on the residual
//!      `r(s) = F(s, x̄) − s` (MATH.md §4.1;
//!      [`Backend::slow_point_lm`](memrnn_core::Backend::slow_point_lm)), with the damped
//!      Gauss–Newton system solved densely (analytic Jacobians, f64 normal equations and
//!      Cholesky per candidate) or matrix-free (CG on the normal equations from
//!      Jacobian–vector products, inexact-Newton forcing; [`memrnn_core::lm_krylov`]),
//!      [`LmConfig::solver`](memrnn_core::LmConfig) choosing by size; on the CPU both are
//!      fused loops, other backends run the trait's defaults built from `seq_forward`,
//!      `step_jacobian`, `step_jvp` and `seq_backward`. A handful of iterations on
//!      contracting networks, a few hundred along the curved valleys of trained ones;
//!      each candidate ends *converged* (`S < tol`),
//!      at a *minimum of `S`* above `tol` (a slow point that is not a fixed point:
//!      [`SearchStop::Minimum`]), *stalled*, or at the iteration cap;
//!    - [`SearchMethod::Adam`]: Adam on `S(s) = ‖F(s, x̄) − s‖²`, each candidate with its
//!      own moments and step count, until `S < tol`, until `S` stalls, or up to
//!      `max_iters` updates
//!      ([`Backend::slow_point_iterations`](memrnn_core::Backend::slow_point_iterations):
//!      a fused loop on the CPU, one launch per many iterations on a GPU);
//! 2. **drops** (see [`Counts`]):
//!    - candidates whose `S` became NaN or infinite;
//!    - candidates with `S > max_speed_sq` (the search did not reach a slow point),
//!      except those at a minimum of `S`, which are kept with their speed whatever it is
//!      (the paper's slow points are the minima of `S`);
//!    - *outliers*: points farther from the centroid of the **initial candidates** than
//!      `outlier_scale` times the candidates' mean distance to that centroid
//!      (FixedPointFinder's rule: a point that ran away from the region the network
//!      visits, such as a saturated corner, says nothing about its memory). The rule is
//!      off when all candidates coincide (the spread is 0) or `outlier_scale` is 0;
//! 3. **de-duplicates**: points sorted by `S` (slowest first), each kept unless it lies
//!    within `dedup_tol` (Euclidean) of a point already kept, which then counts it in
//!    its `merged`;
//! 4. **analyses** every distinct point: `S` recomputed with
//!    [`Backend::step_speed`](memrnn_core::Backend::step_speed), the speed `√S`, the
//!    readout's class at `h` (argmax of `W_out h + b_out`), the Jacobian `J = ∂F/∂s`
//!    ([`Backend::step_jacobian`](memrnn_core::Backend::step_jacobian)), its eigenvalues
//!    (`faer`, f64, largest magnitude first), stability (`max |λ| < 1`) and how many
//!    eigenvalues lie within `unit_tol` of the unit circle (the slow directions a memory
//!    can sit along).
//!
//! Points are reported slowest first. [`analyse_points`] does step 4 alone (for the
//! per-class mean states, say). [`find_slow_points_ensemble`] runs the finder for many
//! networks at once: their searches in one backend call per cell
//! ([`search_ensemble`]: `ensemble_slow_point_lm` / `ensemble_slow_point_iterations`,
//! one launch for all on a GPU, side by side on the CPU), then each network's steps 2–4
//! on its own; each network's report is exactly its report alone. Candidates come from the network's own trajectories:
//! [`sample_candidates`] (K rows of recorded states `[N, S]`, optionally with Gaussian
//! noise, seeded) and [`class_mean_states`] (the paper's per-class means).
//! [`write_safetensors`], [`write_summary_json`] and [`format_table`] write a report.
//!
//! # Defaults, and why
//!
//! | setting | default | why |
//! | --- | --- | --- |
//! | method | Levenberg–Marquardt | Adam on `S` creeps along the flat directions (`|λ| ≈ 1`) that memories live on, and its stall rule stops it long before a slow point; Gauss–Newton steps solve for those directions, so candidates reach `tol` (or the minimum of `S`) in tens of iterations. Each iteration costs `O(S³)` per candidate (the normal equations) instead of `O(S²)`, which fewer iterations more than repay. |
//! | LM `max_iters` | 1000 | trial steps; quadratic convergence near a fixed point needs a handful, but on trained networks candidates creep along curved valleys of `S` (slow manifolds) to their minima: a GRU H 64 trained 600 steps needed a median of 322 (90% by 648), and a cap of 200 left nearly all at the cap. |
//! | LM solver | auto | dense below, matrix-free (Krylov) above the size where `(2k + 1)` products with `W_hh` (`k = 16` CG steps) cost less than `AᵀA` and its Cholesky factor: GRU `H ≥ 85`, tanh RNN `H ≥ 29`, LSTM `H ≥ 15` ([`LmSolver::resolve`](memrnn_core::LmSolver::resolve)). |
//! | LM `min_grad` | `1e-2` on `‖(J − I)ᵀr‖ / ‖r‖ = ‖∇√S‖` | a dimensionless measure (how fast the speed `√S` changes with distance); f32 rounding of `r` (about `1e-7 √S`-relative per unit) keeps it near 1e-3 at minima with `S` around 1e-6, so a tighter threshold would miss real minima; a regular point has a gradient of order the smallest singular value of `J − I` or more. |
//! | LM stall rule, damping | every 20 iterations, ≤ 0.1%; `μ` 1e-3 … 1e10 | no progress is declared when `S` stops falling or when no damped step lowers it; then the gradient decides between *minimum of `S`* and *stalled*. |
//! | Adam `lr` | `1e-2` | states live in `[−1, 1]` (tanh units); Adam moves each coordinate by about `lr` per step whatever the gradient's scale, so 1e-2 crosses the state space in a few hundred steps and still settles to `S` near f32's floor. FixedPointFinder starts at 1.0 with an adaptive schedule and gradient clipping; a fixed, smaller rate needs neither and is the same on every backend. |
//! | `β₁, β₂, ε` | 0.9, 0.999, 1e-8 | PyTorch's / Adam's defaults, as in the ICML paper's PyTorch code. |
//! | `max_iters` | 10,000 | the iteration count of the project's benchmark and twice FixedPointFinder's 5,000: slow directions (`|λ| ≈ 1`) make `S` very flat. |
//! | `tol` (on `S`) | `1e-10` | FixedPointFinder stops at `q = S/2 < 1e-12` in f64-minded TensorFlow; in f32 one step's rounding alone leaves `S ≈ H · 1e-14` at `H` in the hundreds, so 1e-10 is as tight as f32 can reliably certify. |
//! | stall rule | every 1,000 iterations, stop if `S` fell by ≤ 0.1% | a slow point that is not a fixed point (`S > 0` at the minimum) stops there instead of burning the whole budget; Adam's jitter makes a per-step test useless, a window is robust. A tighter rule (500 iterations, 1%) stopped candidates that were still creeping along slow directions, where Adam's second moment remembers early, large gradients for about 1/(1 − β₂) = 1,000 steps. |
//! | `max_speed_sq` | `1e-6` | a kept point moves less than 1e-3 per step, so it stays within about one unit over the 1,000-step delays the paper evaluates memory at. |
//! | `outlier_scale` | 10 | FixedPointFinder's `outlier_distance_scale`. |
//! | `dedup_tol` | `1e-3` | FixedPointFinder's `tol_unique`. |
//! | `unit_tol` | `1e-2` | `|λ|` within 1% of 1: a mode that decays (or grows) by at most 1% per step, i.e. lives for about 100 steps or more. |
//!
//! # Precision along slow directions
//!
//! Near a fixed point `s*`, `S(s* + δ) ≈ ‖(J − I) δ‖²`: along an eigenvector with
//! eigenvalue `λ ≈ 1` the speed hardly grows, so `S < tol` pins that component only to
//! `|δ| ≈ √tol / |1 − λ|` (5e-4 for `tol` 1e-10 and `λ` 0.98). Candidates converging to
//! one such point can therefore end farther apart than `dedup_tol`; raise `dedup_tol`
//! (or lower `tol`) for networks with slow modes, and read `merged` with that in mind.
//! Points on a genuine slow manifold (a line attractor, a "ghost" of a saddle-node) are
//! reported as many points along it, which is what they are.
//!
//! # Example
//!
//! ```
//! use memrnn_core::{CellDims, CellKind, Model};
//! use memrnn_cpu::CpuBackend;
//! use memrnn_slowpoints::{find_slow_points, format_table, sample_candidates, FinderConfig};
//!
//! let cell = CellDims::new(CellKind::Gru, 3, 8)?;
//! let model = Model::init(cell, 7);
//! let x_bar = vec![0.1; 3];
//! // Recorded states [N, S] would come from the network's own trajectories.
//! let states: Vec<f32> = (0..40 * 8).map(|i| ((i * 37 % 17) as f32 / 17.0) - 0.5).collect();
//! let candidates = sample_candidates(&states, cell.state_size(), 16, 0.01, 1)?;
//! let report = find_slow_points(&CpuBackend::new(), &model, &x_bar, &candidates, &FinderConfig::default())?;
//! println!("{}", format_table(&report));
//! # Ok::<(), memrnn_core::Error>(())
//! ```

pub mod candidates;
pub mod eigen;
pub mod finder;
pub mod output;

pub use candidates::{class_mean_states, sample_candidates, ClassMeans};
pub use eigen::eigenvalues_sorted;
pub use finder::{
    analyse_points, find_slow_points, find_slow_points_ensemble, search_ensemble, CandidateEnd,
    Counts, Eigenvalue, EnsembleMember, FinderConfig, SearchMethod, SearchOutcome, SlowPoint,
    SlowPointReport,
};
pub use memrnn_core::backend::{CandidateStatus, SlowPointConfig, SlowPointSearch, StopReason};
pub use memrnn_core::lm::{LmConfig, LmSearch, LmStatus, SearchStop};
pub use output::{
    format_table, summary, summary_json, write_safetensors, write_summary_json, PointSummary,
    Summary, SUMMARY_EIGENVALUES,
};
