//! `memrnn sweep` (the λ sweep over seeds and regularisation targets) and what it shares
//! with `memrnn study`: `merge` of shard folders, and several CPU workers side by side.

use crate::{load_data, train_config, DataArgs, EvalCommon, NetArgs};
use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use memrnn_core::Backend;
use memrnn_cpu::CpuBackend;
use memrnn_train::sweep::{run_sweep, SweepConfig, SweepOutcome, Target};
use std::path::PathBuf;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SweepCmd {
    #[command(subcommand)]
    merge: Option<MergeCmd>,
    #[command(flatten)]
    run: SweepArgs,
}

#[derive(Subcommand)]
pub(crate) enum MergeCmd {
    /// Combine the output folders of the shards (--shard i/n) into the report of one run.
    Merge(MergeArgs),
}

#[derive(Args)]
pub(crate) struct MergeArgs {
    /// The shards' output folders (every shard 0/n .. (n−1)/n once).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged report goes.
    #[arg(long)]
    pub out: PathBuf,
}

/// Network and training-length presets (explicit --hidden, --batch, --steps,
/// --finetune-steps win).
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub(crate) enum Preset {
    /// GRU H 64, batch 64, 1,200 + 300 steps: minutes per seed on a 2-core CPU.
    Small,
    /// benches/RESULTS.md's larger run: GRU H 128, batch 64, 4,000 + 1,500 steps.
    Larger,
    /// The paper's: H 200, batch 128, 140,000 + 5,000 steps (a GPU's job).
    Paper,
}

#[derive(Args)]
pub(crate) struct SweepArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Settings of every base network (its --seed is replaced by --seeds).
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    eval: EvalCommon,
    /// Size preset.
    #[arg(long, value_enum, default_value_t = Preset::Small)]
    config: Preset,
    /// Seeds: one base network each.
    #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Speed-penalty weights; 0 is the control every other λ is compared with.
    #[arg(long, default_value = "0,0.003,0.01,0.03,0.1", value_delimiter = ',')]
    lambdas: Vec<f32>,
    /// Regularisation targets: slow-points (found once on the base network),
    /// class-means (the "centre of mass"), trajectory (delay-trajectory states),
    /// refound-N (slow points re-found every N fine-tuning steps).
    #[arg(long, default_value = "slow-points", value_delimiter = ',')]
    targets: Vec<String>,
    /// Fine-tuning steps (every λ, the control too).
    #[arg(long)]
    finetune_steps: Option<u64>,
    /// Fine-tuning learning rate.
    #[arg(long, default_value_t = 5e-4, allow_negative_numbers = true)]
    finetune_lr: f32,
    #[command(flatten)]
    jobs: JobArgs,
    /// Output folder (each network's result in nets/; run again to resume).
    #[arg(long, default_value = "sweep")]
    out: PathBuf,
}

/// Options of a job of many networks (sweep, study).
#[derive(Args, Clone)]
pub(crate) struct JobArgs {
    /// Run shard i of n (i from 0): a deterministic share of the networks; combine the
    /// shards' folders with `merge`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Networks trained side by side on the CPU, each on its own pool of
    /// --threads threads (default: the cores shared out). Results do not depend on it.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Stop after this many networks (e.g. within a batch job's time limit); run the same
    /// command again to continue.
    #[arg(long)]
    pub max_networks: Option<usize>,
    /// Networks of one shape trained together as one ensemble (one backend call per
    /// operation for all of them; on the CPU side by side across the worker's threads), at
    /// most this many; default: each worker's whole share at once; 1 trains them one after
    /// another. Results do not depend on it.
    #[arg(long)]
    pub ensemble: Option<usize>,
}

impl JobArgs {
    pub fn shard(&self) -> Result<memrnn_train::jobs::Shard> {
        Ok(match &self.shard {
            None => Default::default(),
            Some(s) => s.parse()?,
        })
    }
}

/// `--workers` of a sweep or study command (1 for every other command).
pub(crate) fn workers(cmd: &crate::Cmd) -> usize {
    match cmd {
        crate::Cmd::Sweep(s) if s.merge.is_none() => s.run.jobs.workers,
        crate::Cmd::Study(s) => s.workers(),
        _ => 1,
    }
}

/// `workers` CPU backends with `threads` threads each (default: the cores shared out).
pub(crate) fn cpu_workers(
    workers: usize,
    threads: Option<usize>,
    precision: memrnn_core::Precision,
) -> Result<Vec<CpuBackend>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers == 0 || workers > 4 * cores.max(16) {
        bail!(
            "--workers {workers}: give 1 to {} (networks side by side, this machine has {cores} cores)",
            4 * cores.max(16)
        );
    }
    let threads = threads.unwrap_or((cores / workers).max(1));
    let v = (0..workers)
        .map(|_| {
            CpuBackend::new()
                .with_precision(precision)
                .with_threads(threads)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    eprintln!("memrnn: {workers} workers side by side, {threads} CPU thread(s) each");
    Ok(v)
}

pub(crate) fn cmd_sweep<B: Backend>(backends: &[B], a: SweepCmd, progress: bool) -> Result<()> {
    if let Some(MergeCmd::Merge(m)) = a.merge {
        let r = memrnn_train::sweep::merge(&m.dirs, &m.out)?;
        println!("{}", r.table());
        println!(
            "merged {} shard folders into {}",
            m.dirs.len(),
            m.out.display()
        );
        return Ok(());
    }
    let a = a.run;
    if a.net.seed != 1 {
        bail!(
            "--seed {} trains one network; the sweep trains one base network per seed of --seeds",
            a.net.seed
        );
    }
    let mut net = a.net.clone();
    let default_ft = match a.config {
        Preset::Small => {
            net.steps.get_or_insert(1200);
            300
        }
        Preset::Larger => {
            net.hidden.get_or_insert(128);
            net.batch.get_or_insert(64);
            net.steps.get_or_insert(4000);
            1500
        }
        Preset::Paper => {
            net.paper = true;
            5000
        }
    };
    if a.net.paper && a.config != Preset::Paper {
        bail!("--paper with --config {:?}: give --config paper", a.config);
    }
    let set = load_data(&a.data)?;
    let train = train_config(&net, 1200)?;
    let targets = a
        .targets
        .iter()
        .map(|t| t.parse::<Target>())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let cfg = SweepConfig {
        eval: a.eval.config(train.task.t_max, train.task.delta_min),
        train,
        seeds: a.seeds.clone(),
        lambdas: a.lambdas.clone(),
        targets,
        finetune_steps: a.finetune_steps.unwrap_or(default_ft),
        finetune_lr: a.finetune_lr,
        out_dir: a.out.clone(),
        shard: a.jobs.shard()?,
        max_networks: a.jobs.max_networks,
        ensemble: a.jobs.ensemble,
        progress,
    };
    cfg.validate()?;
    eprintln!(
        "memrnn sweep: {} H{} batch {}, {} + {} steps, seeds {:?}, λ {:?}, targets {}, delays up to {}{}",
        cfg.train.cell,
        cfg.train.hidden,
        cfg.train.batch,
        cfg.train.steps,
        cfg.finetune_steps,
        cfg.seeds,
        cfg.lambdas,
        a.targets.join(","),
        cfg.eval.delays.iter().max().copied().unwrap_or(0),
        if cfg.shard.count > 1 { format!(", shard {}", cfg.shard) } else { String::new() }
    );
    match run_sweep(backends, &set, &cfg)? {
        SweepOutcome::Finished(r) => {
            println!("{}", r.table());
            println!(
                "report {0}/sweep.json, {0}/sweep.txt; plots {0}/delay_<target>.svg, {0}/longest_vs_lambda.svg",
                a.out.display()
            );
        }
        SweepOutcome::Partial { done, total } => {
            println!(
                "{done} of this run's {total} networks are done (results in {}/nets).",
                a.out.display()
            );
            if cfg.shard.count > 1 && done == total {
                println!("shard {} finished: combine every shard's folder with `memrnn sweep merge DIR... --out DIR`", cfg.shard);
            } else {
                println!("run the same command again to continue");
            }
        }
    }
    Ok(())
}
