//! MNIST in the standard IDX format (LeCun's `train-images-idx3-ubyte` /
//! `train-labels-idx1-ubyte`), gzipped or not.
//!
//! An IDX file is a 4-byte magic `00 00 08 ndim` (`08` = unsigned bytes), `ndim` big-endian
//! `u32` sizes, then the values row-major. Images are `[N, rows, cols]`, labels `[N]`.
//! A gzipped file is recognised by its own magic (`1f 8b`), whatever its name.
//!
//! [`load_mnist_dir`] reads the pair from a folder (the bundled `data/`, or the full
//! MNIST), checks that the counts agree and every label is a digit, and, when the folder
//! holds a `SHA256SUMS` file (as `data/` does), checks the files against it.
//! [`load_bundled`] reads the bundled digits from the copy embedded in the crate
//! (`crates/memrnn-train/data`, `include_bytes!`), so an installed binary has them too.

use crate::error::{Result, TrainError};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// File names tried for the images, in order (the first that exists is read).
pub const IMAGE_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-images-idx3-ubyte",
    "train-images.idx3-ubyte",
    "train-images.idx3-ubyte.gz",
];
/// File names tried for the labels, in order.
pub const LABEL_FILES: [&str; 4] = [
    "train-labels-idx1-ubyte.gz",
    "train-labels-idx1-ubyte",
    "train-labels.idx1-ubyte",
    "train-labels.idx1-ubyte.gz",
];
/// The checksum file (`sha256sum` format) checked when present.
pub const CHECKSUM_FILE: &str = "SHA256SUMS";

/// Largest IDX payload accepted (1 GiB): the full MNIST is 47 MB.
const MAX_PAYLOAD: usize = 1 << 30;

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxU8 {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Images and labels of a digit data set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mnist {
    /// `[N, rows, cols]`, row-major, 0 (background) to 255 (ink).
    pub images: Vec<u8>,
    /// `[N]`, each `0..=9`.
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Mnist {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image (`rows · cols`, 784 for MNIST).
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// Image `i`'s pixels.
    pub fn image(&self, i: usize) -> &[u8] {
        let p = self.pixels();
        &self.images[i * p..(i + 1) * p]
    }

    /// How many images of each digit.
    pub fn class_counts(&self) -> [usize; 10] {
        let mut c = [0usize; 10];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// Builds a data set from parts, checking that they agree.
    pub fn new(images: Vec<u8>, labels: Vec<u8>, rows: usize, cols: usize) -> Result<Self> {
        let origin = PathBuf::from("<memory>");
        check_pair(&origin, &images, &labels, rows, cols)?;
        Ok(Mnist {
            images,
            labels,
            rows,
            cols,
        })
    }
}

fn check_pair(path: &Path, images: &[u8], labels: &[u8], rows: usize, cols: usize) -> Result<()> {
    let p = rows * cols;
    if p == 0 || images.len() != labels.len() * p {
        return Err(TrainError::data(
            path,
            format!(
                "the image file holds {} images of {rows}×{cols} but the label file holds {} labels; \
                 they must come from the same set (train images with train labels)",
                images.len().checked_div(p).unwrap_or(0),
                labels.len()
            ),
        ));
    }
    if labels.is_empty() {
        return Err(TrainError::data(path, "the data set holds no images"));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(TrainError::data(
            path,
            format!("label {i} is {l}; MNIST labels are digits 0–9 (is this the label file?)"),
        ));
    }
    Ok(())
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    decode_maybe_gz(path, raw)
}

/// Gunzips `raw` when it starts with the gzip magic; `origin` names it in errors.
pub fn decode_maybe_gz(origin: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_PAYLOAD as u64 + 1024)
            .read_to_end(&mut out)
            .map_err(|e| {
                TrainError::data(
                    origin,
                    format!("corrupt or truncated gzip stream ({e}); re-download the file or rerun `cargo xtask data`"),
                )
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses IDX bytes of unsigned bytes with `ndim` dimensions.
pub fn parse_idx_u8(path: &Path, bytes: &[u8], ndim: usize) -> Result<IdxU8> {
    let err = |reason: String| TrainError::data(path, reason);
    if bytes.len() < 4 {
        return Err(err(format!(
            "only {} bytes: too short for an IDX header (truncated?)",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(format!(
            "bad magic {:02x} {:02x} {:02x} {:02x}: an IDX file starts with 00 00; is this an MNIST IDX file?",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(err(format!(
            "IDX data type 0x{:02x}: memrnn reads unsigned bytes (0x08), as MNIST stores them",
            bytes[2]
        )));
    }
    if bytes[3] as usize != ndim {
        return Err(err(format!(
            "the IDX header says {} dimensions but {} are expected here ({})",
            bytes[3],
            ndim,
            if ndim == 3 {
                "images: [N, rows, cols]"
            } else {
                "labels: [N]"
            }
        )));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(err(format!(
            "only {} bytes: the header of a {ndim}-dimensional IDX file needs {header} (truncated?)",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|k| {
            let b = &bytes[4 + 4 * k..8 + 4 * k];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let total = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_PAYLOAD)
        .ok_or_else(|| {
            err(format!(
                "dimensions {dims:?} are absurdly large (corrupt header?)"
            ))
        })?;
    let payload = &bytes[header..];
    if payload.len() < total {
        return Err(err(format!(
            "truncated: the header says {dims:?} ({total} bytes of data) but only {} follow",
            payload.len()
        )));
    }
    if payload.len() > total {
        return Err(err(format!(
            "{} bytes of trailing data after the {dims:?} array (corrupt file?)",
            payload.len() - total
        )));
    }
    Ok(IdxU8 {
        dims,
        data: payload.to_vec(),
    })
}

/// The IDX bytes (not gzipped) of an unsigned-byte array.
pub fn idx_u8_bytes(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Reads an image file (`[N, rows, cols]`).
pub fn read_images(path: &Path) -> Result<IdxU8> {
    parse_images(path, &read_maybe_gz(path)?)
}

fn parse_images(origin: &Path, bytes: &[u8]) -> Result<IdxU8> {
    let idx = parse_idx_u8(origin, bytes, 3)?;
    if idx.dims[1] == 0 || idx.dims[2] == 0 {
        return Err(TrainError::data(
            origin,
            format!(
                "images of {}×{} pixels: both sizes must be positive",
                idx.dims[1], idx.dims[2]
            ),
        ));
    }
    Ok(idx)
}

/// Reads a label file (`[N]`).
pub fn read_labels(path: &Path) -> Result<IdxU8> {
    let bytes = read_maybe_gz(path)?;
    parse_idx_u8(path, &bytes, 1)
}

/// Reads an image file and a label file and checks that they agree.
pub fn load_mnist_files(images: &Path, labels: &Path) -> Result<Mnist> {
    let im = read_images(images)?;
    let lb = read_labels(labels)?;
    pair(images, labels, im, lb)
}

fn pair(images: &Path, labels: &Path, im: IdxU8, lb: IdxU8) -> Result<Mnist> {
    if im.dims[0] != lb.dims[0] {
        return Err(TrainError::data(
            images,
            format!(
                "{} images but {} labels in {}; the image and label files must come from the same set",
                im.dims[0],
                lb.dims[0],
                labels.display()
            ),
        ));
    }
    check_pair(labels, &im.data, &lb.data, im.dims[1], im.dims[2])?;
    Ok(Mnist {
        images: im.data,
        labels: lb.data,
        rows: im.dims[1],
        cols: im.dims[2],
    })
}

fn find_file(dir: &Path, names: &[&str]) -> Result<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            TrainError::data(
                dir,
                format!(
                    "no MNIST file found (looked for {names:?}); point --mnist-dir at a folder \
                     holding the IDX files, or run `cargo xtask data` to rebuild the bundled data/"
                ),
            )
        })
}

/// Checks `files` against the folder's `SHA256SUMS` when it has one.
pub fn verify_checksums(dir: &Path, files: &[&Path]) -> Result<()> {
    let sums_path = dir.join(CHECKSUM_FILE);
    let Ok(text) = std::fs::read_to_string(&sums_path) else {
        return Ok(());
    };
    for file in files {
        let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if expected_sum(&text, name).is_some() {
            let bytes = std::fs::read(file).map_err(|e| TrainError::io(file, e))?;
            check_sum(&text, name, &bytes, file, &sums_path)?;
        }
    }
    Ok(())
}

/// The SHA-256 that a `sha256sum`-format `text` gives for the file `name`.
fn expected_sum(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        let sum = it.next()?;
        let n = it.next()?.trim_start_matches('*');
        (n == name).then(|| sum.to_ascii_lowercase())
    })
}

/// Fails when `text` lists `name` with a SHA-256 other than that of `bytes`.
fn check_sum(text: &str, name: &str, bytes: &[u8], file: &Path, sums: &Path) -> Result<()> {
    let Some(want) = expected_sum(text, name) else {
        return Ok(());
    };
    let got: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != want {
        return Err(TrainError::data(
            file,
            format!(
                "SHA-256 is {got} but {} says {want}: the file is corrupt or was changed; \
                 rerun `cargo xtask data` (or restore it with git)",
                sums.display()
            ),
        ));
    }
    Ok(())
}

/// Loads MNIST from a folder: the bundled `data/` or the full set.
pub fn load_mnist_dir(dir: &Path) -> Result<Mnist> {
    if !dir.is_dir() {
        return Err(TrainError::data(
            dir,
            "not a folder; point --mnist-dir at the folder holding train-images-idx3-ubyte(.gz) \
             and train-labels-idx1-ubyte(.gz) (the repository's data/ by default)",
        ));
    }
    let images = find_file(dir, &IMAGE_FILES)?;
    let labels = find_file(dir, &LABEL_FILES)?;
    verify_checksums(dir, &[&images, &labels])?;
    load_mnist_files(&images, &labels)
}

/// The bundled data folder inside this crate's source (`crates/memrnn-train/data`, linked
/// from the repository's `data/`). A binary that is copied or installed may not find it:
/// [`load_bundled`] reads the same digits from the binary itself.
pub fn bundled_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// The bundled images, gzipped IDX, embedded in the crate (`data/`, 1.6 MB).
pub const BUNDLED_IMAGES_GZ: &[u8] = include_bytes!("../data/train-images-idx3-ubyte.gz");
/// The bundled labels, gzipped IDX, embedded in the crate.
pub const BUNDLED_LABELS_GZ: &[u8] = include_bytes!("../data/train-labels-idx1-ubyte.gz");
/// The bundled `SHA256SUMS`, embedded in the crate.
pub const BUNDLED_SHA256SUMS: &str = include_str!("../data/SHA256SUMS");

/// What errors and logs call the embedded digits.
pub const BUNDLED_ORIGIN: &str = "<bundled digits embedded in memrnn-train>";

/// The bundled 10,000 digits, from the copy embedded in the binary (no file is read, so
/// this works wherever the binary is), checked against the embedded `SHA256SUMS`.
pub fn load_bundled() -> Result<Mnist> {
    let origin = Path::new(BUNDLED_ORIGIN);
    let sums = Path::new("SHA256SUMS (embedded)");
    check_sum(
        BUNDLED_SHA256SUMS,
        IMAGE_FILES[0],
        BUNDLED_IMAGES_GZ,
        origin,
        sums,
    )?;
    check_sum(
        BUNDLED_SHA256SUMS,
        LABEL_FILES[0],
        BUNDLED_LABELS_GZ,
        origin,
        sums,
    )?;
    let im = parse_images(
        origin,
        &decode_maybe_gz(origin, BUNDLED_IMAGES_GZ.to_vec())?,
    )?;
    let lb = decode_maybe_gz(origin, BUNDLED_LABELS_GZ.to_vec())?;
    let lb = parse_idx_u8(origin, &lb, 1)?;
    pair(origin, origin, im, lb)
}
