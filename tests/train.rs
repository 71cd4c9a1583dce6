//! Training (issue 17 item 2, the core): steps of SGD and Adam lower the loss and the error on
//! digits not trained on, a diverging learning rate stops with the last good weights, and the
//! written .onnx file is the original graph with the new weights, which onnxruntime reads alike.

use blindspot::train::{Adversarial, Optimizer, Pool, Settings, Trainer};
use blindspot::{Classifier, DigitPack, Error};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn bytes(id: &str) -> Vec<u8> {
    std::fs::read(format!("{ROOT}/models/{id}.onnx")).unwrap()
}

/// Digits `from..to` of the 10k test pack: images end to end, and labels. (The training set is
/// not in the repository yet; these tests train on test digits and judge on others.)
fn digits(from: usize, to: usize) -> (Vec<f32>, Vec<usize>) {
    let pack = DigitPack::parse(&std::fs::read(format!("{ROOT}/models/data/mnist-test-10k.bin")).unwrap()).unwrap();
    ((from..to).flat_map(|i| pack.input(i)).collect(), (from..to).map(|i| pack.labels[i] as usize).collect())
}

fn error_rate(model: &Classifier, images: &[f32], labels: &[usize]) -> f64 {
    let wrong = labels.iter().enumerate().filter(|(i, &y)| model.classify(&images[i * 784..(i + 1) * 784]).unwrap().label != y).count();
    wrong as f64 / labels.len() as f64
}

#[test]
fn training_lowers_the_loss_and_the_error_on_digits_it_did_not_see() {
    // FC10(1) was trained with a weight decay of 1: under-fitted (21% test error); without the
    // decay, a few epochs on 2,000 digits bring its error down on 1,000 others
    let (train_x, train_y) = digits(0, 2000);
    let (test_x, test_y) = digits(5000, 6000);
    let before = error_rate(&Classifier::load(&bytes("fc10-1"), None).unwrap(), &test_x, &test_y);
    for optimizer in [Optimizer::parse("sgd").unwrap(), Optimizer::parse("adam").unwrap()] {
        let learning_rate = if matches!(optimizer, Optimizer::Adam { .. }) { 0.01 } else { 0.1 };
        let settings = Settings { learning_rate, optimizer, weight_decay: 0.0, batch: 50, seed: 7, cosine_steps: None };
        let mut trainer = Trainer::new(&bytes("fc10-1"), settings).unwrap();
        let mut losses = vec![];
        for _ in 0..3 {
            let epoch = trainer.epoch(&train_x, &train_y, |_, _| true).unwrap();
            assert_eq!(epoch.steps, 40);
            losses.push(epoch.loss);
        }
        assert!(losses[2] < losses[0], "{optimizer:?}: the loss went {losses:?}");
        let trained = Classifier::load(&trainer.write_onnx(&bytes("fc10-1")).unwrap(), None).unwrap();
        let after = error_rate(&trained, &test_x, &test_y);
        println!("{optimizer:?}: loss {losses:?}, error on 1,000 unseen digits {before} -> {after}");
        assert!(after < before - 0.03, "{optimizer:?}: error {before} -> {after}");
    }
}

#[test]
fn the_same_seed_gives_the_same_weights_and_another_seed_other_ones() {
    let (x, y) = digits(0, 300);
    let run = |seed: u64| {
        let settings = Settings { seed, batch: 30, ..Settings::default() };
        let mut trainer = Trainer::new(&bytes("fc100-100-10"), settings).unwrap();
        trainer.epoch(&x, &y, |_, _| true).unwrap();
        trainer.weights().to_vec()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn a_diverging_learning_rate_stops_and_keeps_the_last_good_weights() {
    let (x, y) = digits(0, 400);
    let settings = Settings { learning_rate: 1e30, optimizer: Optimizer::Sgd { momentum: 0.9 }, batch: 20, ..Settings::default() };
    let mut trainer = Trainer::new(&bytes("fc100-100-10"), settings).unwrap();
    let e = trainer.epoch(&x, &y, |_, _| true).unwrap_err();
    assert!(matches!(e, Error::Run(_)), "{e}");
    assert!(e.to_string().contains("is too high for this model: lower it"), "{e}");
    assert!(trainer.weights().iter().flatten().all(|v| v.is_finite()), "a non-finite weight was kept");
    // a step from them refuses again and leaves them as they are
    let kept = trainer.weights().to_vec();
    assert!(trainer.step(&x[..20 * 784], &y[..20]).is_err());
    assert_eq!(trainer.weights(), &kept[..]);
    for bad in [Settings { learning_rate: -1.0, ..Settings::default() }, Settings { batch: 0, ..Settings::default() }] {
        assert!(matches!(Trainer::new(&bytes("fc10-1"), bad), Err(Error::Input(_))));
    }
}

/// The written file, read by onnxruntime (python3, as scripts/test.sh installs it), gives
/// blindspot's logits for the trained weights.
#[test]
fn the_written_onnx_is_read_alike_by_onnxruntime() {
    let (x, y) = digits(0, 200);
    let mut trainer = Trainer::new(&bytes("cnn"), Settings { batch: 20, learning_rate: 0.01, ..Settings::default() }).unwrap();
    trainer.epoch(&x, &y, |_, _| true).unwrap();
    let written = trainer.write_onnx(&bytes("cnn")).unwrap();
    let dir = format!("{ROOT}/target/train-test");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/trained.onnx"), &written).unwrap();
    let input = ndarray::Array4::from_shape_vec((4, 1, 28, 28), x[..4 * 784].to_vec()).unwrap();
    ndarray_npy::write_npy(format!("{dir}/x.npy"), &input).unwrap();
    let script = "import sys, json, numpy, onnxruntime\n\
                  s = onnxruntime.InferenceSession(sys.argv[1] + '/trained.onnx')\n\
                  x = numpy.load(sys.argv[1] + '/x.npy')\n\
                  print(json.dumps([s.run(None, {s.get_inputs()[0].name: x[i:i+1]})[0].ravel().tolist() for i in range(4)]))";
    let out = std::process::Command::new("python3").args(["-c", script, &dir]).output().expect("python3");
    assert!(out.status.success(), "onnxruntime: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<Vec<f32>> = serde_json::from_slice(&out.stdout).unwrap();
    let ours = Classifier::load(&written, None).unwrap();
    let original = Classifier::load(&bytes("cnn"), None).unwrap();
    for (i, row) in theirs.iter().enumerate() {
        let logits = ours.classify(&x[i * 784..(i + 1) * 784]).unwrap().logits;
        for (a, b) in logits.iter().zip(row) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "digit {i}: {a} vs onnxruntime's {b}");
        }
        assert_ne!(logits, original.classify(&x[i * 784..(i + 1) * 784]).unwrap().logits, "the weights did not change");
    }
}

/// FGSM adversarial training (Goodfellow et al., 2014) does what it is for: after the same steps
/// from the same start, the FGSM examples of size 0.1 fool the FGSM-trained FC100-100-10 on
/// fewer unseen digits than the plainly trained one.
#[test]
fn fgsm_training_makes_fgsm_examples_fool_the_model_less_often() {
    use blindspot::attack::baselines::fgsm;
    use blindspot::attack::Goal;
    let (train_x, train_y) = digits(0, 3000);
    let (test_x, test_y) = digits(6000, 6300);
    let fooled = |fgsm_training: Option<f64>| -> usize {
        let adversarial = || fgsm_training.map_or(Adversarial::None, Adversarial::Fgsm);
        let settings = Settings { learning_rate: 0.05, batch: 50, seed: 11, ..Settings::default() };
        let mut trainer = Trainer::new(&bytes("fc100-100-10"), settings).unwrap();
        for _ in 0..2 {
            trainer.epoch_with(&train_x, &train_y, adversarial(), |_, _| true).unwrap();
        }
        let model = Classifier::load(&trainer.write_onnx(&bytes("fc100-100-10")).unwrap(), None).unwrap();
        (0..test_y.len())
            .filter(|&i| {
                let x = &test_x[i * 784..(i + 1) * 784];
                let label = model.classify(x).unwrap().label;
                label == test_y[i] && fgsm(&model, x, Goal::Untargeted { label }, 0.1).unwrap().success
            })
            .count()
    };
    let (plain, robust) = (fooled(None), fooled(Some(0.1)));
    println!("FGSM examples (0.1) fool {plain} of 300 digits after plain training, {robust} after FGSM training");
    assert!(robust * 2 < plain, "plain {plain}, FGSM-trained {robust}");
}

/// The paper's pool (section 4.2): filled with L-BFGS examples that fool the model of the moment
/// (each kept with its true label), refreshed as training goes on, and a training run on it.
#[test]
fn the_lbfgs_pool_holds_examples_that_fooled_the_model_and_trains_on_them() {
    let bytes = bytes("fc100-100-10");
    let (x, y) = digits(0, 1000);
    let model = Classifier::load(&bytes, None).unwrap();
    let mut pool = Pool::new(40, 3);
    let options = blindspot::attack::lbfgs::Options::default();
    let entered = pool.refresh(&model, &x, &y, 40, &options).unwrap();
    assert_eq!(pool.len(), entered);
    assert!(entered >= 30, "only {entered} of 40 attacks succeeded");
    let (images, labels) = pool.examples();
    for (image, &label) in images.iter().zip(labels) {
        assert_ne!(model.classify(image).unwrap().label, label, "a pool example the model gets right");
        assert!(image.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    let settings = Settings { learning_rate: 0.02, batch: 25, seed: 5, ..Settings::default() };
    let mut trainer = Trainer::new(&bytes, settings).unwrap();
    let mut pool = Pool::new(40, 3);
    let adversarial = Adversarial::Pool { pool: &mut pool, bytes: &bytes, every: 10, count: 8, options };
    let epoch = trainer.epoch_with(&x, &y, adversarial, |_, _| true).unwrap();
    assert_eq!(epoch.steps, 40);
    assert!(epoch.loss.is_finite());
    assert!(pool.len() >= 30, "the pool holds {}", pool.len());
    // the trained model classifies the pool's examples correctly more often than it did
    let trained = trainer.classifier(&bytes).unwrap();
    let (images, labels) = pool.examples();
    let right = |m: &Classifier| images.iter().zip(labels).filter(|(im, &l)| m.classify(im).unwrap().label == l).count();
    println!("pool of {}: the original model gets {} right, the trained one {}", images.len(), right(&model), right(&trained));
    assert!(right(&trained) > right(&model));
}

/// A weight held by a Constant node is trained like an initializer and written back into it; a
/// graph with no weights is refused with what to do.
#[test]
fn a_constant_nodes_weight_is_trained_and_a_graph_without_weights_is_refused() {
    let fixture = |name: &str| std::fs::read(format!("{ROOT}/tests/fixtures/{name}")).unwrap();
    let (x, y) = digits(0, 500);
    let mut trainer = Trainer::new(&fixture("constant-weight.onnx"), Settings { batch: 50, learning_rate: 0.1, ..Settings::default() }).unwrap();
    assert_eq!(trainer.trainable().weights().iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["w"]);
    let before = trainer.epoch(&x, &y, |_, _| true).unwrap().loss;
    let after = trainer.epoch(&x, &y, |_, _| true).unwrap().loss;
    assert!(after < before, "{before} -> {after}");
    let written = trainer.write_onnx(&fixture("constant-weight.onnx")).unwrap();
    let trained = Classifier::load(&written, None).unwrap();
    let original = Classifier::load(&fixture("constant-weight.onnx"), None).unwrap();
    assert_ne!(trained.classify(&x[..784]).unwrap().logits, original.classify(&x[..784]).unwrap().logits);
    let e = Trainer::new(&fixture("no-weights.onnx"), Settings::default()).err().expect("a graph without weights trained");
    assert!(e.to_string().contains("the model has no float weights to train"), "{e}");
}

/// The paper's per-layer pools (section 4.2, its method (c)): the layers above a hidden layer
/// cut out as a model of their own answer as the whole model does; the L-BFGS examples of that
/// layer's outputs fool those layers and lie in (0,1); an epoch with the pools trains the layers
/// above to label more of them correctly.
#[test]
fn per_layer_pools_attack_each_hidden_layer_and_train_the_layers_above() {
    use blindspot::layers::{sigmoid_layers, upper};
    use blindspot::train::Method;
    let bytes = bytes("fc100-100-10");
    let model = Classifier::load(&bytes, None).unwrap();
    assert_eq!(sigmoid_layers(&bytes).unwrap(), ["hidden1", "hidden2"]);
    let (x, y) = digits(0, 1000);
    for tensor in ["hidden1", "hidden2"] {
        let above = Classifier::load(&upper(&bytes, tensor, &[100]).unwrap(), None).unwrap();
        assert_eq!(above.input_shape(), [1, 100]);
        let probe = blindspot::units::Probe::new(&model, tensor).unwrap();
        for i in 0..5 {
            let image = &x[i * 784..(i + 1) * 784];
            let (whole, cut) = (model.classify(image).unwrap(), above.classify(&probe.run(image).unwrap()).unwrap());
            let worst = whole.logits.iter().zip(&cut.logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{tensor}, digit {i}: logits differ by {worst}");
        }
    }
    assert!(upper(&bytes, "nowhere", &[100]).unwrap_err().to_string().contains("no node output \"nowhere\""));

    let settings = Settings { learning_rate: 0.02, batch: 25, seed: 5, ..Settings::default() };
    let mut trainer = Trainer::new(&bytes, settings).unwrap();
    let method = Method::parse("layers", 0.1, 30, 0.2, 0.5).unwrap();
    let mut pool = method.pool(5);
    let mut layers = method.layer_pools(&bytes, &trainer, 5).unwrap();
    assert_eq!(layers.iter().map(|l| l.tensor.as_str()).collect::<Vec<_>>(), ["hidden1", "hidden2"]);
    // before training: each layer's examples fool the layers above it, as the attack meant
    let options = blindspot::attack::lbfgs::Options::default();
    let before: Vec<Classifier> =
        ["hidden1", "hidden2"].iter().map(|t| Classifier::load(&upper(&bytes, t, &[100]).unwrap(), None).unwrap()).collect();
    for (layer, above) in layers.iter_mut().zip(&before) {
        let made = layer.refresh(&model, trainer.weights(), &x, &y, 30, &options).unwrap();
        assert!(made >= 20, "{}: only {made} of 30 attacks succeeded", layer.tensor);
        let (images, labels) = layer.pool.examples();
        for (h, &label) in images.iter().zip(labels) {
            assert_eq!(h.len(), 100);
            assert!(h.iter().all(|v| (0.0..=1.0).contains(v)));
            assert_ne!(above.classify(h).unwrap().label, label, "{}: an example the layers above get right", layer.tensor);
        }
    }
    let epoch = trainer.epoch_with(&x, &y, method.adversarial(&mut pool, &mut layers, &bytes), |_, _| true).unwrap();
    assert_eq!(epoch.steps, 40);
    assert!(epoch.loss.is_finite());
    let written = trainer.write_onnx(&bytes).unwrap();
    for (layer, above) in layers.iter().zip(&before) {
        let trained = Classifier::load(&upper(&written, &layer.tensor, &[100]).unwrap(), None).unwrap();
        let (images, labels) = layer.pool.examples();
        let right = |m: &Classifier| images.iter().zip(labels).filter(|(h, &l)| m.classify(h).unwrap().label == l).count();
        println!("{}: {} examples, the layers above got {} right, trained {}", layer.tensor, images.len(), right(above), right(&trained));
        assert!(right(&trained) > right(above), "{}", layer.tensor);
    }
}
