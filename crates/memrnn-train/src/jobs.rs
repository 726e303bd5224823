//! What the sweep and the study share: many independent networks, each one's result a
//! file of its own in the output folder, so that a job can be interrupted and resumed
//! (finished networks are read back, not retrained), split into deterministic shards
//! (`--shard i/n`) run on different machines and merged, and run several networks side
//! by side on the CPU, one backend per worker.
//!
//! Every file a report is built from is written by [`write_atomic`] (a temporary file
//! renamed into place), so a killed job leaves either a whole result or none.

use crate::error::{config_err, Result, TrainError};
use memrnn_core::Backend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A deterministic share of a job's units: unit `u` belongs to shard `u mod count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Shard {
    /// 0-based, below `count` (Slurm's `$SLURM_ARRAY_TASK_ID` with `--array=0-(n−1)`).
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || {
            TrainError::Config(format!(
                "--shard {s:?}: give i/n with 0 ≤ i < n, e.g. 0/4 for the first of four shards \
                 (i counts from 0, like $SLURM_ARRAY_TASK_ID)"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count || count > 100_000 {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether unit `unit` (its index in the job's canonical order) is this shard's.
    pub fn takes(&self, unit: usize) -> bool {
        unit % self.count == self.index
    }
}

/// Writes `text` to `path` through a temporary file renamed into place.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Pretty JSON of `v` (the reports' one format: byte-identical for equal values).
pub fn to_json(v: &impl Serialize) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| TrainError::Config(e.to_string()))
}

/// `v` as it reads back from its JSON text (numbers parsed as a file's are), so that a
/// value in memory compares equal to the same value read from a file.
pub fn normalise(v: &serde_json::Value) -> Result<serde_json::Value> {
    serde_json::from_str(&to_json(v)?).map_err(|e| TrainError::Config(e.to_string()))
}

/// Reads a JSON file written by [`write_atomic`]: `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        TrainError::Config(format!(
            "{} is not a result this version wrote ({e}): delete it to recompute that network",
            path.display()
        ))
    })
}

/// The plan file of an output folder: the job's settings and its shard. A folder holds
/// one job: resuming with other settings, or merging shards of different jobs, is refused.
pub fn check_or_write_plan(dir: &Path, settings: &serde_json::Value, shard: Shard) -> Result<()> {
    let path = dir.join("plan.json");
    let want = normalise(&serde_json::json!({"settings": settings, "shard": shard}))?;
    if let Some(have) = read_json::<serde_json::Value>(&path)? {
        if have != want {
            let what = if have.get("settings") == Some(settings) {
                format!(
                    "shard {} (this run is shard {shard})",
                    have.get("shard")
                        .and_then(|s| serde_json::from_value::<Shard>(s.clone()).ok())
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "?".into())
                )
            } else {
                "other settings".to_string()
            };
            return config_err(format!(
                "{} holds a job with {what}: resume it with the same settings, or give a new \
                 --out folder",
                dir.display()
            ));
        }
        return Ok(());
    }
    write_atomic(&path, &to_json(&want)?)
}

/// Reads a shard folder's plan: its settings and shard.
pub fn read_plan(dir: &Path) -> Result<(serde_json::Value, Shard)> {
    let path = dir.join("plan.json");
    let v: serde_json::Value = read_json(&path)?.ok_or_else(|| {
        TrainError::Config(format!(
            "{} has no plan.json: give the output folders of the shards to merge",
            dir.display()
        ))
    })?;
    let shard = v
        .get("shard")
        .and_then(|s| serde_json::from_value::<Shard>(s.clone()).ok())
        .ok_or_else(|| TrainError::Config(format!("{}: no shard recorded", path.display())))?;
    Ok((v.get("settings").cloned().unwrap_or_default(), shard))
}

/// Checks that `dirs` are the shards of one job (same settings, every shard `0..n` once)
/// and returns the settings.
pub fn check_shards(dirs: &[PathBuf]) -> Result<serde_json::Value> {
    if dirs.is_empty() {
        return config_err("merge needs the output folders of the shards");
    }
    let mut settings: Option<serde_json::Value> = None;
    let mut seen: Vec<Shard> = vec![];
    for d in dirs {
        let (s, shard) = read_plan(d)?;
        match &settings {
            None => settings = Some(s),
            Some(first) if *first != s => {
                return config_err(format!(
                    "{} was run with other settings than {}: only shards of one job merge",
                    d.display(),
                    dirs[0].display()
                ))
            }
            _ => {}
        }
        if seen.contains(&shard) {
            return config_err(format!("shard {shard} is given twice ({})", d.display()));
        }
        seen.push(shard);
    }
    let n = seen[0].count;
    if seen.iter().any(|s| s.count != n) {
        return config_err("the folders come from different splits (--shard i/n with different n)");
    }
    let missing: Vec<String> = (0..n)
        .filter(|i| !seen.iter().any(|s| s.index == *i))
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        return config_err(format!(
            "shard(s) {} missing: merge needs every shard of the job",
            missing.join(", ")
        ));
    }
    Ok(settings.unwrap_or_default())
}

/// Copies the result file `name` from whichever of `dirs` holds it into `out`, refusing
/// copies that disagree. `Ok(false)` when no folder holds it.
pub fn merge_file(dirs: &[PathBuf], name: &str, out: &Path) -> Result<bool> {
    let mut found: Option<(PathBuf, Vec<u8>)> = None;
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            let bytes = std::fs::read(&p).map_err(|e| TrainError::io(&p, e))?;
            if let Some((q, b)) = &found {
                if *b != bytes {
                    return config_err(format!(
                        "{} and {} disagree: the same network was computed twice with \
                         different results",
                        q.display(),
                        p.display()
                    ));
                }
            } else {
                found = Some((p, bytes));
            }
        }
    }
    match found {
        None => Ok(false),
        Some((_, bytes)) => {
            let text = String::from_utf8(bytes).map_err(|e| TrainError::Config(e.to_string()))?;
            write_atomic(&out.join(name), &text)?;
            Ok(true)
        }
    }
}

/// Checks an ensemble size (`--ensemble`): at least one network when given.
pub fn check_ensemble_size(ensemble: Option<usize>) -> Result<()> {
    if ensemble == Some(0) {
        return config_err(
            "--ensemble 0 would train no network at a time: give at least 1 (1 trains the \
             networks one after another), or leave it out to train each worker's share together",
        );
    }
    Ok(())
}

/// Splits `units` (networks of one shape) into the ensembles the workers train: at most
/// `max` units each (`None`: as few ensembles as there are `workers`, so that each worker
/// trains its share together), in order, sizes differing by at most one.
pub fn ensemble_chunks<T: Clone>(units: &[T], workers: usize, max: Option<usize>) -> Vec<Vec<T>> {
    if units.is_empty() {
        return vec![];
    }
    let per = max.unwrap_or(usize::MAX).max(1);
    let count = units.len().div_ceil(per).max(workers.clamp(1, units.len()));
    let (base, extra) = (units.len() / count, units.len() % count);
    let mut out = Vec::with_capacity(count);
    let mut at = 0;
    for k in 0..count {
        let len = base + (k < extra) as usize;
        out.push(units[at..at + len].to_vec());
        at += len;
    }
    out
}

/// One progress line over a whole job, in units of work (training steps), with an ETA.
pub fn job_progress(show: bool, total: u64, prefix: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} steps (ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// Runs `work(backend, job)` for every job, on one thread per backend (each worker takes
/// the next job in order; one backend runs them in order on this thread). The first
/// error (in job order) stops the workers taking new jobs and is returned. Results go to
/// files, so the order jobs finish in does not matter to any report.
pub fn run_jobs<B: Backend, J: Sync>(
    backends: &[B],
    jobs: &[J],
    work: impl Fn(&B, &J) -> Result<()> + Sync,
) -> Result<()> {
    if backends.is_empty() {
        return config_err("no backend to run the networks on");
    }
    if backends.len() == 1 {
        for j in jobs {
            work(&backends[0], j)?;
        }
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let errors: Mutex<Vec<(usize, TrainError)>> = Mutex::new(vec![]);
    std::thread::scope(|s| {
        for b in backends {
            let (next, stop, errors, work) = (&next, &stop, &errors, &work);
            s.spawn(move || loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(j) = jobs.get(i) else { return };
                if let Err(e) = work(b, j) {
                    stop.store(true, Ordering::SeqCst);
                    if let Ok(mut v) = errors.lock() {
                        v.push((i, e));
                    }
                    return;
                }
            });
        }
    });
    let mut errs = errors.into_inner().unwrap_or_default();
    errs.sort_by_key(|(i, _)| *i);
    match errs.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        assert_eq!(s.to_string(), "1/3");
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2", "1/2/3", ""] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains("--shard"), "{bad}: {e}");
        }
        // Every unit in exactly one shard.
        for u in 0..20 {
            let owners = (0..3)
                .filter(|&i| Shard { index: i, count: 3 }.takes(u))
                .count();
            assert_eq!(owners, 1);
        }
    }

    #[test]
    fn ensemble_chunks_cover_every_unit_once_within_the_limit() {
        for n in 0..23usize {
            let units: Vec<usize> = (0..n).collect();
            for workers in 1..4 {
                for max in [None, Some(1), Some(2), Some(5), Some(100)] {
                    let chunks = ensemble_chunks(&units, workers, max);
                    let flat: Vec<usize> = chunks.iter().flatten().copied().collect();
                    assert_eq!(flat, units, "n {n} workers {workers} max {max:?}");
                    assert!(chunks.iter().all(|c| !c.is_empty()));
                    if let Some(m) = max {
                        assert!(chunks.iter().all(|c| c.len() <= m), "{chunks:?}");
                    }
                    if max.is_none() && n > 0 {
                        assert_eq!(chunks.len(), workers.min(n), "n {n} workers {workers}");
                    }
                }
            }
        }
        assert!(check_ensemble_size(Some(0)).is_err());
        assert!(check_ensemble_size(Some(1)).is_ok() && check_ensemble_size(None).is_ok());
    }

    #[test]
    fn plans_refuse_other_settings_and_shards() {
        let dir = std::env::temp_dir().join(format!("memrnn-jobs-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = serde_json::json!({"x": 1});
        check_or_write_plan(&dir, &a, Shard::default()).unwrap();
        check_or_write_plan(&dir, &a, Shard::default()).unwrap();
        let e = check_or_write_plan(&dir, &serde_json::json!({"x": 2}), Shard::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("other settings"), "{e}");
        let e = check_or_write_plan(&dir, &a, Shard { index: 0, count: 2 })
            .unwrap_err()
            .to_string();
        assert!(e.contains("shard 0/1"), "{e}");
        // Merging: missing and doubled shards are named.
        let e = check_shards(&[dir.clone(), dir.clone()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parallel_jobs_run_every_job_once_and_report_the_first_error() {
        let backends = [memrnn_cpu::CpuBackend::new(), memrnn_cpu::CpuBackend::new()];
        let done = Mutex::new(vec![]);
        let jobs: Vec<usize> = (0..17).collect();
        run_jobs(&backends, &jobs, |_, &j| {
            done.lock().unwrap().push(j);
            Ok(())
        })
        .unwrap();
        let mut d = done.into_inner().unwrap();
        d.sort();
        assert_eq!(d, jobs);
        let e = run_jobs(&backends, &jobs, |_, &j| {
            if j >= 3 {
                config_err(format!("job {j}"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(e.to_string().contains("job 3"), "{e}");
    }
}
