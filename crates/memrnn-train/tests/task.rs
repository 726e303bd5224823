//! The task generator: time ranges, class balance, noise statistics, images and triggers,
//! determinism, curricula, bad configurations.

use memrnn_train::idx::{bundled_data_dir, load_mnist_dir};
use memrnn_train::task::{delay_inputs, make_batch, Curriculum, DigitSet, Stage, TaskConfig};
use std::sync::OnceLock;

fn set() -> &'static DigitSet {
    static S: OnceLock<DigitSet> = OnceLock::new();
    S.get_or_init(|| DigitSet::new(load_mnist_dir(&bundled_data_dir()).unwrap()).unwrap())
}

const FULL: Stage = Stage {
    t_max: 20,
    vocab: 10,
};

#[test]
fn read_and_report_times_cover_their_ranges() {
    let task = TaskConfig::default();
    let mut seen_a = [0usize; 20];
    let mut seen_s = [0usize; 20];
    let mut delays = [0usize; 20];
    for step in 0..20 {
        let b = make_batch(set(), &task, FULL, 5, step, 256).unwrap();
        for tr in &b.trials {
            let (a, s) = (tr.t_read as usize, tr.t_report as usize);
            assert!(a < 16, "t_a = {a} outside [0, 16)");
            assert!(
                s >= a + 4 && s < 20,
                "t_s = {s} outside [t_a + 4, 20) for t_a = {a}"
            );
            seen_a[a] += 1;
            seen_s[s] += 1;
            delays[s - a] += 1;
        }
    }
    assert!(
        seen_a[..16].iter().all(|&c| c > 150),
        "t_a not uniform: {seen_a:?}"
    );
    assert!(seen_s[4..20].iter().all(|&c| c > 0), "{seen_s:?}");
    assert_eq!(delays[..4].iter().sum::<usize>(), 0);
    assert!(delays[4] > 0 && delays[19] > 0, "{delays:?}");
}

#[test]
fn classes_are_balanced_and_targets_weighted() {
    let task = TaskConfig::default();
    let mut counts = [0usize; 10];
    for step in 0..40 {
        let b = make_batch(set(), &task, FULL, 9, step, 250).unwrap();
        for (r, tr) in b.trials.iter().enumerate() {
            counts[tr.digit as usize] += 1;
            for t in 0..20 {
                let k = t * 250 + r;
                if t == tr.t_report as usize {
                    assert_eq!(b.targets[k], tr.digit + 1);
                    assert_eq!(b.weights[k], 19.0);
                } else {
                    assert_eq!(b.targets[k], 0);
                    assert_eq!(b.weights[k], 1.0);
                }
            }
        }
    }
    // 10,000 draws: each class 1000 ± 5σ (σ ≈ 30).
    assert!(
        counts.iter().all(|&c| (850..1150).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn images_triggers_and_noise_are_where_they_belong() {
    let task = TaskConfig::default();
    let b = make_batch(set(), &task, FULL, 3, 11, 128).unwrap();
    let i = b.input;
    assert_eq!(i, 785);
    let (mut sum, mut sq, mut n) = (0f64, 0f64, 0usize);
    for t in 0..20 {
        for (r, tr) in b.trials.iter().enumerate() {
            let row = &b.x[(t * 128 + r) * i..(t * 128 + r + 1) * i];
            assert_eq!(row[784], if t == tr.t_report as usize { 1.0 } else { 0.0 });
            if t == tr.t_read as usize {
                let img = set().image(tr.digit as usize, tr.image as usize);
                for (p, &v) in row[..784].iter().zip(img) {
                    assert_eq!(*p, v as f32 / 255.0);
                }
            } else {
                for &p in &row[..784] {
                    sum += p as f64;
                    sq += p as f64 * p as f64;
                    n += 1;
                }
            }
        }
    }
    let mean = sum / n as f64;
    let std = (sq / n as f64 - mean * mean).sqrt();
    // ~1.9M samples: standard error of the mean ≈ 2e-4.
    assert!((mean - 0.1307).abs() < 1.5e-3, "noise mean {mean}");
    assert!((std - 0.3081).abs() < 1.5e-3, "noise std {std}");
}

#[test]
fn normals_have_gaussian_tails() {
    let task = TaskConfig {
        noise_mean: 0.0,
        noise_std: 1.0,
        ..TaskConfig::default()
    };
    let x = delay_inputs(&task, 1001, 1, 2, 1000);
    let z: Vec<f64> = x
        .chunks_exact(1001)
        .flat_map(|r| r[..1000].iter().map(|&v| v as f64))
        .collect();
    let frac = |k: f64| z.iter().filter(|v| v.abs() > k).count() as f64 / z.len() as f64;
    // P(|z| > 1) = 0.3173, P(|z| > 2) = 0.0455, P(|z| > 3) = 0.0027.
    assert!((frac(1.0) - 0.3173).abs() < 0.003, "{}", frac(1.0));
    assert!((frac(2.0) - 0.0455).abs() < 0.001, "{}", frac(2.0));
    assert!((frac(3.0) - 0.0027).abs() < 0.0003, "{}", frac(3.0));
    assert!(x.chunks_exact(1001).all(|r| r[1000] == 0.0));
}

#[test]
fn same_seed_same_batch_other_step_other_batch() {
    let task = TaskConfig::default();
    let a = make_batch(set(), &task, FULL, 42, 7, 32).unwrap();
    let b = make_batch(set(), &task, FULL, 42, 7, 32).unwrap();
    assert_eq!(a.x, b.x);
    assert_eq!(a.trials, b.trials);
    let c = make_batch(set(), &task, FULL, 42, 8, 32).unwrap();
    assert_ne!(a.x, c.x);
    assert_ne!(a.trials, c.trials);
    let d = make_batch(set(), &task, FULL, 43, 7, 32).unwrap();
    assert_ne!(a.x, d.x);
    // A larger batch extends the smaller one row for row (counter-based generation).
    let e = make_batch(set(), &task, FULL, 42, 7, 64).unwrap();
    assert_eq!(&e.trials[..32], &a.trials[..]);
}

#[test]
fn curricula_stages() {
    let task = TaskConfig::default();
    let d = Curriculum::Delay.stages(&task);
    let t: Vec<usize> = d.iter().map(|s| s.t_max).collect();
    assert_eq!(t, vec![6, 8, 10, 12, 14, 16, 18, 20]);
    assert!(d.iter().all(|s| s.vocab == 10));
    let v = Curriculum::Vocab.stages(&task);
    assert_eq!(
        v.iter().map(|s| s.vocab).collect::<Vec<_>>(),
        (2..=10).collect::<Vec<_>>()
    );
    assert!(v.iter().all(|s| s.t_max == 20));
    // A VoCu stage shows only its digits; a DeCu stage fits its T_max.
    let b = make_batch(set(), &task, v[0], 1, 0, 500).unwrap();
    assert!(b.trials.iter().all(|t| t.digit < 2));
    let b = make_batch(set(), &task, d[0], 1, 0, 500).unwrap();
    assert_eq!(b.shape.steps, 6);
    assert!(b
        .trials
        .iter()
        .all(|t| t.t_read < 2 && t.t_report < 6 && t.t_report >= t.t_read + 4));
    assert_eq!(b.weights.iter().filter(|&&w| w == 5.0).count(), 500);
}

#[test]
fn bad_task_configurations_are_errors() {
    let bad = [
        TaskConfig {
            delta_min: 0,
            ..TaskConfig::default()
        },
        TaskConfig {
            t_max: 4,
            ..TaskConfig::default()
        },
        TaskConfig {
            noise_std: -1.0,
            ..TaskConfig::default()
        },
    ];
    for t in bad {
        let e = make_batch(
            set(),
            &t,
            Stage {
                t_max: t.t_max,
                vocab: 10,
            },
            1,
            0,
            4,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("invalid configuration"), "{e}");
    }
    assert!("sideways".parse::<Curriculum>().is_err());
    assert!(make_batch(set(), &TaskConfig::default(), FULL, 1, 0, 0).is_err());
}
