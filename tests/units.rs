//! Property 1 in the core: named tensors, activations, rankings against brute force, maximisation.

use blindspot::grad::Objective;
use blindspot::units::{self, named_tensors, Probe};
use blindspot::{Classifier, DigitPack};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn model(id: &str) -> Classifier {
    Classifier::load(&std::fs::read(format!("{ROOT}/models/{id}.onnx")).unwrap(), None).unwrap()
}

fn pack() -> DigitPack {
    DigitPack::parse(&std::fs::read(format!("{ROOT}/models/data/mnist-test-1k.bin")).unwrap()).unwrap()
}

#[test]
fn the_cnn_names_the_tensors_of_its_card_with_their_shapes() {
    let tensors = named_tensors(&model("cnn"));
    let find = |name: &str| tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no {name}")).shape.clone();
    // the card: normalized, conv1, pool1, conv2, pool2, flat, features (128-d), logits
    assert_eq!(find("conv1"), [16, 28, 28]);
    assert_eq!(find("pool1"), [16, 14, 14]);
    assert_eq!(find("conv2"), [32, 14, 14]);
    assert_eq!(find("pool2"), [32, 7, 7]);
    assert_eq!(find("flat"), [1568]);
    assert_eq!(find("features"), [128]);
    assert_eq!(find("logits"), [10]);
    assert!(tensors.iter().all(|t| t.name != "input"), "the input is not a tensor to probe");
    let order: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    let at = |n: &str| order.iter().position(|&o| o == n).unwrap();
    assert!(at("conv1") < at("pool1") && at("pool1") < at("features") && at("features") < at("logits"));
}

#[test]
fn activations_equal_the_projection_objective_and_rankings_equal_brute_force() {
    let cnn = model("cnn");
    let pack = pack();
    let n = 200;
    let images: Vec<f32> = (0..n).flat_map(|i| pack.input(i)).collect();
    for tensor in ["features", "pool2"] {
        let probe = Probe::new(&cnn, tensor).unwrap();
        let len = probe.tensor.len();
        let acts = probe.run(&images).unwrap();
        assert_eq!(acts.len(), n * len);
        // brute force through another path: <phi(x), v> as the gradient engine's projection objective
        let projection = cnn.gradient(&Objective::Projection { tensor: tensor.into() }).unwrap();
        for direction in [units::unit(len, 5).unwrap(), units::random_direction(len, 7)] {
            let mut brute: Vec<(usize, f64)> = (0..n)
                .map(|i| (i, projection.evaluate(&pack.input(i), &direction).unwrap().objective as f64))
                .collect();
            brute.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            assert_eq!(brute.len(), n);
            // the top 9, and k beyond the number of images: all of them, ranked
            for k in [9, n + 50] {
                let ranked = units::top_k(&acts, len, &direction, k).unwrap();
                let expected = &brute[..k.min(n)];
                assert_eq!(ranked.len(), expected.len(), "{tensor}: top {k}");
                for (rank, ((i, v), (j, w))) in ranked.iter().zip(expected).enumerate() {
                    assert!((v - w).abs() <= 1e-4 * w.abs().max(1.0), "{tensor} rank {rank}: {v} against {w}");
                    // equal values may swap places; distinct ones may not
                    assert!(i == j || (v - w).abs() <= 1e-4, "{tensor} rank {rank}: digit {i} against {j}");
                }
            }
        }
    }
}

#[test]
fn random_directions_are_unit_length_seeded_and_differ_by_seed() {
    let a = units::random_direction(128, 1);
    let norm: f64 = a.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-6);
    assert_eq!(a, units::random_direction(128, 1));
    assert_ne!(a, units::random_direction(128, 2));
    assert!(units::unit(10, 10).unwrap_err().to_string().contains("unit 10 is not in the tensor, which has 10 units (0 to 9): pick a smaller unit"));
}

#[test]
fn unknown_tensors_and_wrong_directions_are_refused_by_name() {
    let cnn = model("cnn");
    let e = Probe::new(&cnn, "conv7").err().unwrap().to_string();
    assert!(e.contains("no tensor named \"conv7\""), "{e}");
    let probe = Probe::new(&cnn, "features").unwrap();
    let acts = probe.run(&pack().input(0)).unwrap();
    assert!(units::top_k(&acts, 128, &[1.0; 10], 3).is_err());
    assert!(probe.run(&[0.0; 100]).is_err());
}

#[test]
fn maximisation_raises_the_projection_and_stays_in_the_box() {
    let cnn = model("cnn");
    let projection = units::projection(&cnn, "logits").unwrap();
    let grey = vec![0.5f32; 784];
    let direction = units::unit(10, 3).unwrap();
    let mut seen = 0;
    let found = units::maximise(&cnn, &projection, &direction, &grey, 30, |_, _| {
        seen += 1;
        true
    })
    .unwrap();
    assert!(seen > 0 && found.iterations <= 30);
    assert!(found.value > found.start_value + 1.0, "logit 3 from {} to {}", found.start_value, found.value);
    assert!(found.image.iter().all(|&v| (0.0..=1.0).contains(&v)), "inside the box");
    // maximising logit 3 makes the network say 3
    assert_eq!(cnn.classify(&found.image).unwrap().label, 3);
    // the value reported is the projection at the image returned
    let at = projection.evaluate(&found.image, &direction).unwrap().objective as f64;
    assert!((at - found.value).abs() <= 1e-3 * at.abs().max(1.0), "{at} against {}", found.value);
    // cancel
    let e = units::maximise(&cnn, &projection, &direction, &grey, 30, |_, _| false).err().unwrap();
    assert!(matches!(e, blindspot::Error::Cancelled));
}
