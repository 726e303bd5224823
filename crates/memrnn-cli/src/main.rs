//! `memrnn`: train RNNs on the delayed-classification task, evaluate their memory far
//! beyond the training delay, and run the speed-regularisation pipeline (Haviv, Rivkind &
//! Barak, ICML 2019). The backend is chosen at run time (`--backend`) and named on stderr.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use memrnn_core::{Backend, CellKind};
use memrnn_cpu::CpuBackend;
use memrnn_train::eval::{default_delays, evaluate, plot_curves, EvalConfig};
use memrnn_train::objective::SpeedPenalty;
use memrnn_train::pipeline::{build_v, run_pipeline, PipelineConfig, VSource};
use memrnn_train::task::{Curriculum, DigitSet, StageSchedule};
use memrnn_train::train::{RunOutput, TrainConfig, Trainer};
use std::path::{Path, PathBuf};

mod analyse;
mod sweep_cmd;

#[derive(Parser)]
#[command(
    name = "memrnn",
    version,
    about = "Memory in recurrent networks: train, evaluate, regularise"
)]
struct Cli {
    /// Compute backend: auto picks CUDA when a GPU and its driver are present, else the CPU.
    /// cuda-sim runs the CUDA backend's host code and kernels on a simulated device on the
    /// CPU (correctness checks only: thousands of times slower than a GPU; use tiny sizes).
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto, global = true)]
    backend: BackendChoice,
    /// The simulated device for --backend cuda-sim: h100 (132 SMs, 227 KiB shared memory
    /// per block: the persistent kernels run) or small (2 SMs, 48 KiB: the per-step path).
    #[arg(long, value_enum, default_value_t = SimDevice::H100, global = true)]
    sim_device: SimDevice,
    /// CPU threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Storage of the recurrent weights W_hh in every recurrent product: f32, bf16 or f16
    /// (all arithmetic, the master weights and Adam's state stay f32). Recorded in
    /// checkpoints and metrics; every backend (cpu, cuda, cuda-sim) offers all three.
    #[arg(long, default_value = "f32", global = true)]
    precision: memrnn_core::Precision,
    /// No progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum BackendChoice {
    Auto,
    Cpu,
    Cuda,
    CudaSim,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum SimDevice {
    H100,
    Small,
}

/// `--cell`: the recurrent cell.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub(crate) enum CellArg {
    Rnn,
    Gru,
    Lstm,
}

impl From<CellArg> for CellKind {
    fn from(c: CellArg) -> Self {
        match c {
            CellArg::Rnn => CellKind::Rnn,
            CellArg::Gru => CellKind::Gru,
            CellArg::Lstm => CellKind::Lstm,
        }
    }
}

/// `--curriculum`: how the task is ramped up to its final form.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum CurriculumArg {
    /// The final task from the start.
    None,
    /// DeCu: the delay grows stage by stage.
    #[value(alias = "decu")]
    Delay,
    /// VoCu: the digits grow stage by stage.
    #[value(alias = "vocu")]
    Vocab,
}

impl From<CurriculumArg> for Curriculum {
    fn from(c: CurriculumArg) -> Self {
        match c {
            CurriculumArg::None => Curriculum::None,
            CurriculumArg::Delay => Curriculum::Delay,
            CurriculumArg::Vocab => Curriculum::Vocab,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a network (or fine-tune one with --init, optionally with the speed penalty).
    Train(TrainArgs),
    /// Report accuracy against delay for a checkpoint: table, JSON and SVG.
    Eval(EvalArgs),
    /// Train → find slow points → fine-tune with the speed penalty and a λ = 0 control →
    /// evaluate all three, with per-class slow-point speeds before and after.
    Run(RunArgs),
    /// Find a checkpoint's slow points (MATH.md §4): table, safetensors and JSON.
    SlowPoints(analyse::SlowPointArgs),
    /// Memory diagnostics of a checkpoint: Lipschitz constant, Lyapunov exponents,
    /// attractors, memory curve (MATH.md §7): table, JSON and SVG plots.
    Diagnose(analyse::DiagnoseArgs),
    /// Train an ensemble (cells × curricula × seeds) and report how slow-point speed
    /// predicts accuracy at a long delay (Spearman ρ, scatter plot): the paper's central figure.
    Study(StudyArgs),
    /// λ sweep over seeds and regularisation targets: per λ the mean accuracy against delay
    /// with 95% intervals and the paired difference to the λ = 0 control.
    Sweep(sweep_cmd::SweepCmd),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct StudyArgs {
    #[command(subcommand)]
    merge: Option<sweep_cmd::MergeCmd>,
    #[command(flatten)]
    jobs: sweep_cmd::JobArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Network settings for every member (its --cell, --curriculum and --seed are replaced
    /// by the lists below; default 600 steps each).
    #[command(flatten)]
    net: NetArgs,
    /// Cells of the ensemble.
    #[arg(long, value_enum, default_value = "gru,lstm", value_delimiter = ',')]
    cells: Vec<CellArg>,
    /// Curricula of the ensemble.
    #[arg(
        long,
        value_enum,
        default_value = "none,delay,vocab",
        value_delimiter = ','
    )]
    curricula: Vec<CurriculumArg>,
    /// Seeds of the ensemble.
    #[arg(long, default_value = "1,2,3,4", value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Accuracy is compared at these delays (far beyond training).
    #[arg(
        long,
        alias = "long-delay",
        default_value = "200,1000",
        value_delimiter = ','
    )]
    long_delays: Vec<usize>,
    /// Evaluation trials per network and delay.
    #[arg(long, default_value_t = 400)]
    eval_trials: usize,
    /// Output folder.
    #[arg(long, default_value = "study")]
    out: PathBuf,
}

#[derive(Args, Clone)]
pub(crate) struct DataArgs {
    /// Folder with train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz)
    /// (default: the bundled data/).
    #[arg(long)]
    mnist_dir: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct NetArgs {
    /// The recurrent cell.
    #[arg(long, value_enum, default_value_t = CellArg::Gru)]
    cell: CellArg,
    /// Hidden size (default 64; 200 with --paper).
    #[arg(long)]
    hidden: Option<usize>,
    /// Batch size (default 64; 128 with --paper).
    #[arg(long)]
    batch: Option<usize>,
    /// Training steps (default 1500 for `train`, 1200 for `run`; 140,000 with --paper).
    #[arg(long)]
    steps: Option<u64>,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-3, allow_negative_numbers = true)]
    lr: f32,
    /// Global-norm gradient clip: a positive norm, or 0 for no clipping (negative, NaN and
    /// infinite values are refused).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    clip: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// T_max, the training sequence length.
    #[arg(long, default_value_t = 20)]
    t_max: usize,
    /// Curriculum (decu and vocu are accepted as aliases of delay and vocab).
    #[arg(long, value_enum, default_value_t = CurriculumArg::None)]
    curriculum: CurriculumArg,
    /// Advance the curriculum every N steps (instead of on accuracy).
    #[arg(long)]
    stage_every: Option<u64>,
    /// Advance the curriculum when the running report accuracy reaches this.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    stage_acc: f64,
    /// Least steps per curriculum stage under --stage-acc.
    #[arg(long, default_value_t = 200)]
    stage_min_steps: u64,
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// The paper's scale: hidden 200, batch 128, 140,000 training steps and 5,000
    /// fine-tuning steps (unless given). Hours on a CPU; minutes on a GPU.
    #[arg(long)]
    paper: bool,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    net: NetArgs,
    /// Output folder.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Run name (files NAME.safetensors, NAME.metrics.jsonl, ...).
    #[arg(long, default_value = "model")]
    name: String,
    /// Resume this checkpoint (written by `memrnn train`) up to --steps.
    #[arg(long, conflicts_with = "init")]
    resume: Option<PathBuf>,
    /// Start from this checkpoint's weights with a fresh optimiser (fine-tuning).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Speed-penalty weight λ (needs --init; 0 = control run).
    #[arg(long, allow_negative_numbers = true)]
    lambda: Option<f32>,
    /// Where V comes from (with --lambda): slow-points (per-class slow points, the
    /// paper's choice; the default), class-means or trajectory.
    #[arg(long)]
    v: Option<String>,
    /// Record the per-class slow points' speeds and the memory diagnostics (Lipschitz,
    /// Lyapunov, memory curve) every N steps, and before the first, in NAME.track.jsonl.
    #[arg(long)]
    track_every: Option<u64>,
}

#[derive(Args)]
struct EvalCommon {
    /// Longest delay (delays are log-spaced from 4 up to it).
    #[arg(long, default_value_t = 1000)]
    max_delay: usize,
    /// Explicit delays, comma-separated (overrides --max-delay).
    #[arg(long, value_delimiter = ',')]
    delays: Option<Vec<usize>>,
    /// Trials per delay.
    #[arg(long, default_value_t = 500)]
    trials: usize,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 500)]
    eval_batch: usize,
    /// Longest forward chunk (bounds memory at long delays).
    #[arg(long, default_value_t = 50)]
    chunk: usize,
    #[arg(long, default_value_t = 0xE7A1)]
    eval_seed: u64,
}

impl StudyArgs {
    fn workers(&self) -> usize {
        if self.merge.is_some() {
            1
        } else {
            self.jobs.workers
        }
    }
}

impl EvalCommon {
    fn config(&self, t_max: usize, delta_min: usize) -> EvalConfig {
        EvalConfig {
            delays: self
                .delays
                .clone()
                .unwrap_or_else(|| default_delays(self.max_delay)),
            trials: self.trials,
            batch: self.eval_batch,
            chunk: self.chunk,
            read_span: t_max.saturating_sub(delta_min).max(1),
            seed: self.eval_seed,
        }
    }
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The checkpoint to evaluate.
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    eval: EvalCommon,
    /// Write eval.json and eval.svg here (default: beside the checkpoint).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    eval: EvalCommon,
    /// Report folder.
    #[arg(long, default_value = "report")]
    out: PathBuf,
    /// Fine-tuning steps (with λ and with the λ = 0 control).
    #[arg(long)]
    finetune_steps: Option<u64>,
    /// Fine-tuning learning rate.
    #[arg(long, default_value_t = 5e-4, allow_negative_numbers = true)]
    finetune_lr: f32,
    /// Speed-penalty weight λ (per-step mean CE, speed summed over V's points).
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    lambda: f32,
    /// Where V comes from: slow-points (per-class slow points, the paper's choice),
    /// class-means or trajectory.
    #[arg(long, default_value = "slow-points")]
    v: String,
    /// Candidates from delay trajectories for the slow-point finder run on the trained
    /// network (besides the 10 class means).
    #[arg(long, default_value_t = 246)]
    finder_candidates: usize,
    /// Most Adam iterations per slow-point candidate (with --method adam).
    #[arg(long, default_value_t = 10_000)]
    finder_iters: u32,
    /// Slow-point search method: lm (Levenberg–Marquardt) or adam.
    #[arg(long, default_value = "lm")]
    method: memrnn_slowpoints::SearchMethod,
    /// How --method lm solves its steps: dense, krylov (matrix-free) or auto (by size).
    #[arg(long, default_value = "auto")]
    lm_solver: memrnn_core::LmSolver,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let progress = !cli.quiet;
    if let Some(t) = cli.threads {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if t == 0 || t > 16 * cores.max(64) {
            bail!(
                "--threads {t}: give 1 to {} (this machine has {cores} cores; more threads than \
                 cores only adds overhead)",
                16 * cores.max(64)
            );
        }
    }
    // Several networks side by side: one CPU backend per worker.
    let workers = sweep_cmd::workers(&cli.cmd);
    if workers == 0 {
        bail!("--workers 0 would run nothing: give 1 or more networks side by side");
    }
    if workers > 1 {
        match cli.backend {
            BackendChoice::Cpu => {}
            BackendChoice::Auto if memrnn_cuda::CudaBackend::new(0).is_err() => {}
            _ => bail!(
                "--workers {workers} runs several networks side by side on the CPU; on a GPU \
                 give --workers 1 (or --backend cpu)"
            ),
        }
        let backends = sweep_cmd::cpu_workers(workers, cli.threads, cli.precision)?;
        eprintln!("memrnn: backend {}", backends[0].name());
        return match cli.cmd {
            Cmd::Sweep(a) => sweep_cmd::cmd_sweep(&backends, a, progress),
            Cmd::Study(a) => cmd_study(&backends, a, progress),
            _ => unreachable!("only sweep and study take --workers"),
        };
    }
    let cpu = || -> Result<CpuBackend> {
        let mut b = CpuBackend::new().with_precision(cli.precision);
        if let Some(t) = cli.threads {
            b = b.with_threads(t)?;
        }
        Ok(b)
    };
    match cli.backend {
        BackendChoice::Cpu => {
            let b = cpu()?;
            eprintln!("memrnn: backend {}", b.name());
            run_cmd(&b, cli.cmd, progress)
        }
        BackendChoice::Cuda => {
            let b = memrnn_cuda::CudaBackend::new(0)
                .context("--backend cuda: no usable GPU (use --backend cpu or auto)")?
                .with_precision(cli.precision);
            eprintln!("memrnn: backend {}", b.name());
            threads_unused(cli.threads);
            run_cmd(&b, cli.cmd, progress)
        }
        BackendChoice::CudaSim => {
            let props = match cli.sim_device {
                SimDevice::H100 => memrnn_cuda::SimProps::h100_like(),
                SimDevice::Small => memrnn_cuda::SimProps::small(),
            };
            let b = memrnn_cuda::CudaBackend::simulated(props)?.with_precision(cli.precision);
            eprintln!(
                "memrnn: backend {}\nmemrnn: NOTE: a SIMULATED CUDA device ran this command on \
                 the CPU; its results check the kernels, its timings mean nothing",
                b.name()
            );
            run_cmd(&b, cli.cmd, progress)
        }
        BackendChoice::Auto => match memrnn_cuda::CudaBackend::new(0) {
            Ok(b) => {
                let b = b.with_precision(cli.precision);
                eprintln!("memrnn: backend {} (auto: a GPU was found)", b.name());
                threads_unused(cli.threads);
                run_cmd(&b, cli.cmd, progress)
            }
            Err(why) => {
                let b = cpu()?;
                eprintln!("memrnn: backend {} (auto: no GPU: {why})", b.name());
                run_cmd(&b, cli.cmd, progress)
            }
        },
    }
}

/// `--threads` sets the CPU backend's pool: say so when another backend runs.
fn threads_unused(threads: Option<usize>) {
    if let Some(t) = threads {
        eprintln!("memrnn: note: --threads {t} applies to the CPU backend only; it does not change a GPU run");
    }
}

pub(crate) fn load_data(d: &DataArgs) -> Result<DigitSet> {
    // --mnist-dir, else ./data when it holds the files, else the digits in the binary.
    let local = PathBuf::from("data");
    let (m, from) = match &d.mnist_dir {
        Some(dir) => (
            memrnn_train::load_mnist_dir(dir)?,
            dir.display().to_string(),
        ),
        None if local.join(memrnn_train::idx::IMAGE_FILES[0]).is_file() => (
            memrnn_train::load_mnist_dir(&local)?,
            local.display().to_string(),
        ),
        None => (
            memrnn_train::idx::load_bundled()?,
            memrnn_train::idx::BUNDLED_ORIGIN.to_string(),
        ),
    };
    eprintln!(
        "memrnn: {} digits of {}×{} from {from}",
        m.len(),
        m.rows,
        m.cols,
    );
    Ok(DigitSet::new(m)?)
}

fn train_config(n: &NetArgs, default_steps: u64) -> Result<TrainConfig> {
    let cell = CellKind::from(n.cell);
    let curriculum = Curriculum::from(n.curriculum);
    let mut c = TrainConfig {
        cell,
        hidden: n.hidden.unwrap_or(if n.paper { 200 } else { 64 }),
        batch: n.batch.unwrap_or(if n.paper { 128 } else { 64 }),
        steps: n
            .steps
            .unwrap_or(if n.paper { 140_000 } else { default_steps }),
        seed: n.seed,
        curriculum,
        schedule: match n.stage_every {
            Some(k) => StageSchedule::Every(k),
            None => StageSchedule::Accuracy {
                threshold: n.stage_acc,
                min_steps: n.stage_min_steps,
            },
        },
        // 0 is "off"; anything else is kept as given, and the config refuses what is not
        // a positive, finite norm (NaN and negative values are not turned into "off").
        clip: (n.clip != 0.0).then_some(n.clip),
        log_every: n.log_every,
        checkpoint_every: n.checkpoint_every,
        ..TrainConfig::default()
    };
    c.adam.lr = n.lr;
    c.task.t_max = n.t_max;
    c.validate()?;
    Ok(c)
}

fn v_source(name: &str) -> Result<VSource> {
    match name {
        "class-means" | "class-mean" | "means" => Ok(VSource::ClassMeans {
            trials: 1000,
            delay: 20,
            copies: 10,
        }),
        "trajectory" | "trajectories" => Ok(VSource::Trajectory { n: 100, delay: 20 }),
        "slow-points" | "slow-point" | "slowpoints" => Ok(VSource::SlowPoints {
            trials: 1000,
            delay: 20,
            copies: 10,
        }),
        other => {
            bail!("unknown V source {other:?}: expected slow-points, class-means or trajectory")
        }
    }
}

fn run_cmd<B: Backend>(b: &B, cmd: Cmd, progress: bool) -> Result<()> {
    match cmd {
        Cmd::Train(a) => cmd_train(b, a, progress),
        Cmd::Eval(a) => cmd_eval(b, a, progress),
        Cmd::Run(a) => cmd_run(b, a, progress),
        Cmd::SlowPoints(a) => analyse::cmd_slow_points(b, a, progress),
        Cmd::Diagnose(a) => analyse::cmd_diagnose(b, a, progress),
        Cmd::Study(a) => cmd_study(std::slice::from_ref(b), a, progress),
        Cmd::Sweep(a) => sweep_cmd::cmd_sweep(std::slice::from_ref(b), a, progress),
    }
}

fn cmd_train<B: Backend>(b: &B, a: TrainArgs, progress: bool) -> Result<()> {
    let set = load_data(&a.data)?;
    let cfg = train_config(&a.net, 1500)?;
    single_curriculum(&a.net, &cfg)?;
    let out = RunOutput {
        dir: a.out.clone(),
        name: a.name.clone(),
        progress,
    };
    out.validate()?;
    if a.lambda.is_some() && a.init.is_none() {
        bail!("--lambda fine-tunes a trained network: give it with --init CHECKPOINT");
    }
    if a.v.is_some() && a.lambda.is_none() {
        bail!("--v chooses the speed penalty's points: it needs --lambda (and --init)");
    }
    if a.track_every == Some(0) {
        bail!("--track-every 0 would record nothing: give a number of steps ≥ 1, or leave it out");
    }
    let mut t = if let Some(p) = &a.resume {
        Trainer::resume(b, &set, cfg, p)?
    } else if let Some(p) = &a.init {
        let ck = memrnn_core::checkpoint::load_checkpoint(p)?;
        let mut t = Trainer::from_model(b, &set, cfg.clone(), ck.model.clone())
            .with_context(|| format!("fine-tuning {}", p.display()))?;
        if let Some(l) = a.lambda {
            memrnn_train::objective::check_lambda(l)?;
            let v = build_v(
                b,
                &ck.model,
                &set,
                &cfg,
                v_source(a.v.as_deref().unwrap_or("slow-points"))?,
            )?;
            eprintln!(
                "memrnn: speed penalty λ = {l} on {} points ({})",
                v.n, v.source
            );
            t.set_penalty(Some(SpeedPenalty::new(l, v)?))?;
        }
        t
    } else {
        Trainer::new(b, &set, cfg)?
    };
    let s = match a.track_every {
        None | Some(0) => t.run(&out)?,
        Some(every) => {
            let path = a.out.join(format!("{}.track.jsonl", a.name));
            std::fs::create_dir_all(&a.out)
                .with_context(|| format!("creating {}", a.out.display()))?;
            // Keep only the records of steps before the starting point (the run records
            // its starting step itself); a fresh run starts the file anew.
            match t.steps_done().checked_sub(1) {
                Some(before) => {
                    memrnn_train::train::repair_jsonl(&path, before)?;
                }
                None if path.exists() => std::fs::remove_file(&path)
                    .with_context(|| format!("removing the old {}", path.display()))?,
                None => {}
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            eprintln!(
                "memrnn: tracking slow points and diagnostics every {every} steps in {}",
                path.display()
            );
            let task = t.cfg.task;
            let s = t.run_tracked(&out, every, |tr| {
                let line = analyse::track_line(b, &tr.model()?, &set, &task, tr.steps_done())
                    .map_err(|e| memrnn_train::TrainError::Config(format!("tracking: {e:#}")))?;
                use std::io::Write;
                writeln!(file, "{line}").map_err(|e| memrnn_train::TrainError::io(&path, e))
            })?;
            println!("tracking: {}", path.display());
            s
        }
    };
    println!(
        "trained {} steps in {:.1} s: loss {:.4}, report accuracy {:.3}, silence accuracy {:.4}\ncheckpoint {}\nmetrics {}",
        s.steps,
        s.seconds,
        s.last.loss,
        s.report_acc,
        s.silence_acc,
        s.checkpoint.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default(),
        out.metrics().display()
    );
    Ok(())
}

fn cmd_eval<B: Backend>(b: &B, a: EvalArgs, progress: bool) -> Result<()> {
    let set = load_data(&a.data)?;
    let ck = memrnn_core::checkpoint::load_checkpoint(&a.checkpoint)?;
    let task = analyse::checkpoint_task(&a.checkpoint, &ck.metadata)?;
    memrnn_train::train::check_task_model(&ck.model, &set, true)
        .with_context(|| format!("evaluating {}", a.checkpoint.display()))?;
    let cfg = a.eval.config(task.t_max, task.delta_min);
    cfg.validate_for(&ck.model.cell, set.image_count())?;
    let pb = if progress {
        indicatif::ProgressBar::new((cfg.trials.div_ceil(cfg.batch) * cfg.delays.len()) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let r = evaluate(b, &ck.model, &set, &task, &cfg, Some(&pb))?;
    pb.finish_and_clear();
    let dir = a.out.clone().unwrap_or_else(|| {
        a.checkpoint
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = a
        .checkpoint
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_string();
    let json = dir.join(format!("{stem}.eval.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&r)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let svg = dir.join(format!("{stem}.eval.svg"));
    plot_curves(
        &svg,
        &format!("{stem}: report accuracy vs delay"),
        &[(&stem, &r)],
    )?;
    println!("{}", r.table());
    println!("json {}\nplot {}", json.display(), svg.display());
    Ok(())
}

/// `--stage-every` / `--stage-acc` drive a curriculum: with none they would do nothing.
fn single_curriculum(n: &NetArgs, cfg: &TrainConfig) -> Result<()> {
    if n.stage_every.is_some() && cfg.curriculum == Curriculum::None {
        bail!("--stage-every advances a curriculum, but --curriculum is none: it would do nothing; give --curriculum delay or vocab, or leave it out");
    }
    Ok(())
}

fn cmd_run<B: Backend>(b: &B, a: RunArgs, progress: bool) -> Result<()> {
    let set = load_data(&a.data)?;
    let train = train_config(&a.net, 1200)?;
    single_curriculum(&a.net, &train)?;
    let eval = a.eval.config(train.task.t_max, train.task.delta_min);
    let cfg = PipelineConfig {
        finetune_steps: a
            .finetune_steps
            .unwrap_or(if a.net.paper { 5000 } else { 300 }),
        finetune_lr: a.finetune_lr,
        lambda: a.lambda,
        v_source: v_source(&a.v)?,
        finder: memrnn_slowpoints::FinderConfig {
            method: a.method,
            lm: memrnn_core::LmConfig {
                solver: a.lm_solver,
                ..Default::default()
            },
            search: memrnn_core::backend::SlowPointConfig {
                max_iters: a.finder_iters,
                ..Default::default()
            },
            ..Default::default()
        },
        finder_trajectory_candidates: a.finder_candidates,
        eval,
        out_dir: a.out.clone(),
        progress,
        train,
    };
    cfg.validate()?;
    eprintln!(
        "memrnn run: {} H{} batch {}, {} training steps, {} fine-tuning steps (λ = {} and control λ = 0), delays up to {}",
        cfg.train.cell,
        cfg.train.hidden,
        cfg.train.batch,
        cfg.train.steps,
        cfg.finetune_steps,
        cfg.lambda,
        cfg.eval.delays.iter().max().copied().unwrap_or(0)
    );
    let r = run_pipeline(b, &set, &cfg)?;
    println!("\nThe trained network's slow points:\n{}", r.slow_points);
    println!("{}", r.slow_point_table());
    println!("{}", r.table());
    if let Some(l) = r.gain_line() {
        println!("{l}\n");
    }
    println!(
        "V: {} points ({}); backend {}; {:.0} s in all\nreport folder {} (extrapolation curves: {})",
        r.v_points,
        r.v_source,
        r.backend,
        r.seconds,
        a.out.display(),
        r.svg.display()
    );
    Ok(())
}

fn cmd_study<B: Backend>(backends: &[B], a: StudyArgs, progress: bool) -> Result<()> {
    if let Some(sweep_cmd::MergeCmd::Merge(m)) = &a.merge {
        let r = memrnn_train::study::merge(&m.dirs, &m.out)?;
        println!("{}", r.table());
        println!(
            "merged {} shard folders into {}",
            m.dirs.len(),
            m.out.display()
        );
        return Ok(());
    }
    let set = load_data(&a.data)?;
    let train = train_config(&a.net, 600)?;
    let cells = a.cells.iter().map(|&c| CellKind::from(c)).collect();
    let curricula = a.curricula.iter().map(|&c| Curriculum::from(c)).collect();
    let cfg = memrnn_train::study::StudyConfig {
        cells,
        curricula,
        seeds: a.seeds.clone(),
        train,
        long_delays: a.long_delays.clone(),
        eval_trials: a.eval_trials,
        out_dir: a.out.clone(),
        shard: a.jobs.shard()?,
        max_networks: a.jobs.max_networks,
        ensemble: a.jobs.ensemble,
        progress,
    };
    cfg.validate()?;
    eprintln!(
        "memrnn study: {} networks ({} cells × {} curricula × {} seeds), H{}, {} steps each{}",
        cfg.cells.len() * cfg.curricula.len() * cfg.seeds.len(),
        cfg.cells.len(),
        cfg.curricula.len(),
        cfg.seeds.len(),
        cfg.train.hidden,
        cfg.train.steps,
        if cfg.shard.count > 1 {
            format!(", shard {}", cfg.shard)
        } else {
            String::new()
        }
    );
    match memrnn_train::study::run_study(backends, &set, &cfg)? {
        memrnn_train::study::StudyOutcome::Finished(r) => {
            println!("{}", r.table());
            println!(
                "wrote {0}/study.json, {0}/study.txt and {1}",
                a.out.display(),
                r.svg.display()
            );
        }
        memrnn_train::study::StudyOutcome::Partial { done, total } => {
            println!(
                "{done} of this run's {total} networks are done (results in {}/nets).",
                a.out.display()
            );
            if cfg.shard.count > 1 && done == total {
                println!("shard {} finished: combine every shard's folder with `memrnn study merge DIR... --out DIR`", cfg.shard);
            } else {
                println!("run the same command again to continue");
            }
        }
    }
    Ok(())
}
