//! The bundled data and the IDX loader: real MNIST loads and is balanced; truncated,
//! corrupt, mismatched and out-of-range files are clear errors.

use memrnn_train::idx::{self, idx_u8_bytes, load_mnist_dir, load_mnist_files};
use std::io::Write;
use std::path::{Path, PathBuf};

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memrnn-train-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A tiny valid pair: `n` images of 2×3 and labels `i % 10`.
fn write_pair(dir: &Path, n: usize, gzip: bool) -> (PathBuf, PathBuf) {
    let images: Vec<u8> = (0..n * 6).map(|i| (i * 7 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let (mut im, mut lb) = (
        idx_u8_bytes(&[n, 2, 3], &images),
        idx_u8_bytes(&[n], &labels),
    );
    let (imn, lbn) = if gzip {
        im = gz(&im);
        lb = gz(&lb);
        (idx::IMAGE_FILES[0], idx::LABEL_FILES[0])
    } else {
        (idx::IMAGE_FILES[1], idx::LABEL_FILES[1])
    };
    let (ip, lp) = (dir.join(imn), dir.join(lbn));
    std::fs::write(&ip, im).unwrap();
    std::fs::write(&lp, lb).unwrap();
    (ip, lp)
}

fn err_of(r: memrnn_train::Result<memrnn_train::Mnist>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bundled_data_is_real_balanced_mnist() {
    let m = load_mnist_dir(&idx::bundled_data_dir()).expect("data/ loads (run `cargo xtask data`)");
    assert_eq!(m.len(), 10_000);
    assert_eq!((m.rows, m.cols), (28, 28));
    let c = m.class_counts();
    assert!(c.iter().all(|&k| (800..=1200).contains(&k)), "{c:?}");
    // Real digits: ink in the centre, background in the corners.
    let mean: f64 = m.images.iter().map(|&v| v as f64 / 255.0).sum::<f64>() / m.images.len() as f64;
    assert!((mean - 0.13).abs() < 0.02, "mean pixel {mean}");
    assert!(m.image(0)[0] == 0 && m.image(0).iter().any(|&v| v > 200));
    // Interleaved by class.
    assert_eq!(&m.labels[..10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn embedded_digits_are_the_bundled_files_and_the_repo_data_path_still_works() {
    let embedded = idx::load_bundled().expect("the embedded digits load");
    let from_dir = load_mnist_dir(&idx::bundled_data_dir()).unwrap();
    assert_eq!(embedded, from_dir);
    // The folder is inside the crate (so `cargo package` ships it) ...
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(idx::bundled_data_dir().starts_with(crate_dir));
    // ... and, in the repository (not in a packaged crate), `data/` (a link to it) still
    // reads the same digits.
    let repo_data = crate_dir.join("../../data");
    if crate_dir.join("../../Cargo.toml").is_file() {
        assert_eq!(load_mnist_dir(&repo_data).unwrap(), embedded);
    }
    assert_eq!(
        std::fs::read(idx::bundled_data_dir().join(idx::IMAGE_FILES[0])).unwrap(),
        idx::BUNDLED_IMAGES_GZ
    );
}

#[test]
fn plain_and_gzipped_idx_load() {
    for gzip in [false, true] {
        let d = tmp_dir(&format!("ok-{gzip}"));
        write_pair(&d, 23, gzip);
        let m = load_mnist_dir(&d).unwrap();
        assert_eq!((m.len(), m.rows, m.cols), (23, 2, 3));
        assert_eq!(m.labels[12], 2);
        assert_eq!(m.image(1)[0], 42);
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let d = tmp_dir("bad");
    let (ip, lp) = write_pair(&d, 20, false);
    let good_im = std::fs::read(&ip).unwrap();
    let good_lb = std::fs::read(&lp).unwrap();

    // Truncated images.
    std::fs::write(&ip, &good_im[..good_im.len() - 5]).unwrap();
    let e = err_of(load_mnist_files(&ip, &lp));
    assert!(e.contains("truncated") && e.contains("train-images"), "{e}");
    // Truncated header.
    std::fs::write(&ip, &good_im[..6]).unwrap();
    assert!(err_of(load_mnist_files(&ip, &lp)).contains("truncated"));
    // Bad magic.
    let mut bad = good_im.clone();
    bad[0] = 0x12;
    std::fs::write(&ip, &bad).unwrap();
    assert!(err_of(load_mnist_files(&ip, &lp)).contains("magic"));
    // Wrong data type.
    let mut bad = good_im.clone();
    bad[2] = 0x0D;
    std::fs::write(&ip, &bad).unwrap();
    assert!(err_of(load_mnist_files(&ip, &lp)).contains("data type"));
    // Wrong number of dimensions (labels given as images).
    std::fs::write(&ip, &good_lb).unwrap();
    let e = err_of(load_mnist_files(&ip, &lp));
    assert!(e.contains("dimensions"), "{e}");
    std::fs::write(&ip, &good_im).unwrap();
    // Mismatched counts.
    let labels: Vec<u8> = (0..19).map(|i| (i % 10) as u8).collect();
    std::fs::write(&lp, idx_u8_bytes(&[19], &labels)).unwrap();
    let e = err_of(load_mnist_files(&ip, &lp));
    assert!(e.contains("20 images but 19 labels"), "{e}");
    // A label out of range.
    let mut labels: Vec<u8> = (0..20).map(|i| (i % 10) as u8).collect();
    labels[7] = 10;
    std::fs::write(&lp, idx_u8_bytes(&[20], &labels)).unwrap();
    let e = err_of(load_mnist_files(&ip, &lp));
    assert!(e.contains("label 7 is 10"), "{e}");
    std::fs::write(&lp, &good_lb).unwrap();
    // Trailing garbage.
    let mut bad = good_im.clone();
    bad.extend_from_slice(&[1, 2, 3]);
    std::fs::write(&ip, &bad).unwrap();
    assert!(err_of(load_mnist_files(&ip, &lp)).contains("trailing"));
    // A corrupt gzip stream.
    let mut z = gz(&good_im);
    let n = z.len();
    z.truncate(n / 2);
    std::fs::write(&ip, &z).unwrap();
    let e = err_of(load_mnist_files(&ip, &lp));
    assert!(e.contains("gzip"), "{e}");
}

#[test]
fn missing_data_and_bad_checksums_are_clear_errors() {
    let e = err_of(load_mnist_dir(Path::new("/nonexistent/memrnn-data")));
    assert!(e.contains("--mnist-dir"), "{e}");
    let d = tmp_dir("empty");
    let e = err_of(load_mnist_dir(&d));
    assert!(
        e.contains("no MNIST file") && e.contains("cargo xtask data"),
        "{e}"
    );
    let d = tmp_dir("sums");
    write_pair(&d, 20, true);
    std::fs::write(
        d.join(idx::CHECKSUM_FILE),
        format!("{}  {}\n", "0".repeat(64), idx::IMAGE_FILES[0]),
    )
    .unwrap();
    let e = err_of(load_mnist_dir(&d));
    assert!(
        e.contains("SHA-256") && e.contains("cargo xtask data"),
        "{e}"
    );
}
