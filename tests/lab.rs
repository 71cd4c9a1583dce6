//! The lab's protocol driven as the page drives it: JSON requests in, JSON answers out, progress,
//! a cancel that keeps everything loaded; each answer checked against the core called directly.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;

use blindspot::attack::lbfgs::{self, Options};
use blindspot::attack::Goal;
use blindspot::lab::{Host, Lab, Progress, Quiet, Request};
use blindspot::{Classifier, DigitPack, Error};
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn bytes(id: &str) -> Vec<u8> {
    std::fs::read(format!("{ROOT}/models/{id}.onnx")).unwrap()
}

fn pack() -> DigitPack {
    DigitPack::parse(&std::fs::read(format!("{ROOT}/models/data/mnist-test-1k.bin")).unwrap()).unwrap()
}

/// A request as the page's worker sends it: `{ op: payload }`, parsed by serde.
fn request(op: &str, payload: Value) -> Request {
    serde_json::from_value(json!({ op: payload })).unwrap_or_else(|e| panic!("{op}: {e}"))
}

/// Answers `op` and gives back what the page would receive (the answer serialised).
fn ask(lab: &Lab, id: u64, op: &str, payload: Value) -> Result<Value, Error> {
    ask_with(lab, id, op, payload, &Quiet)
}

fn ask_with(lab: &Lab, id: u64, op: &str, payload: Value, host: &dyn Host) -> Result<Value, Error> {
    lab.answer_blocking(id, request(op, payload), host).map(|r| serde_json::to_value(r).unwrap())
}

fn load(lab: &Lab, key: &str, id: &str) -> Value {
    // the page sends bytes as an ArrayBuffer; serde_bytes reads JSON's array of numbers alike
    ask(lab, 1, "load", json!({ "key": key, "bytes": bytes(id) })).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn load_and_classify_answer_what_the_core_answers() {
    let lab = Lab::new();
    let info = load(&lab, "m", "fc100-100-10");
    assert_eq!(info["inputShape"], json!([1, 1, 28, 28]));
    assert_eq!(info["classes"], json!(10));
    assert_eq!(info["output"], json!("logits \"logits\""), "the output kind, and the output it is read from");
    assert_eq!(info["backend"], json!("cpu"));
    assert_eq!(info["reason"], json!("CPU chosen"));
    assert_eq!(info["preference"], json!("cpu"));
    let model = Classifier::load(&bytes("fc100-100-10"), None).unwrap();
    let digits = pack();
    for i in 0..5 {
        let x = digits.input(i);
        let answer = ask(&lab, 2, "classify", json!({ "key": "m", "pixels": x })).unwrap();
        let direct = model.classify(&x).unwrap();
        assert_eq!(answer["label"], json!(direct.label));
        assert_eq!(floats(&answer["logits"]), direct.logits);
        assert_eq!(floats(&answer["probabilities"]), direct.probabilities);
    }
    assert_eq!(lab.loaded(), vec!["m".to_string()]);
    assert_eq!(ask(&lab, 3, "unload", json!({ "key": "m" })).unwrap(), json!(true));
    let gone = ask(&lab, 4, "classify", json!({ "key": "m", "pixels": digits.input(0) })).unwrap_err();
    assert_eq!(gone.to_string(), "bad input: no model \"m\" is loaded here: load it first (in the page, pick the model again)");
}

/// Numbers the page's JavaScript could send that once panicked in the core (a Duration of a
/// negative time, a drawing shorter than its stated size) are answered, not a trap of the worker.
#[test]
fn hostile_numbers_in_requests_are_refused_or_answered_not_panics() {
    let lab = Lab::new();
    load(&lab, "m", "fc100-100-10");
    let pixels = pack().input(0);
    for ms in [-5.0, 0.0, 1e12] {
        let e = ask(&lab, 2, "bench", json!({ "key": "m", "pixels": pixels, "ms": ms })).unwrap_err();
        assert!(matches!(e, Error::Input(_)) && e.to_string().contains("a benchmark runs for 1 to 60000 ms"), "{ms}: {e}");
    }
    // a drawing of 10 values said to be 28x28, and sizes whose product overflows or is empty
    let e = ask(&lab, 3, "mnistLike", json!({ "pixels": vec![1.0; 10], "width": 28, "height": 28 })).unwrap_err();
    assert!(e.to_string().contains("an image of 28x28 needs 784 grey values, not 10"), "{e}");
    for (op, w, h) in [("mnistLike", 65536u64, 65536u64), ("mnistFromRgba", 1 << 30, 1), ("mnistFromRgba", 0, 5)] {
        let field = if op == "mnistLike" { "pixels" } else { "rgba" };
        let e = ask(&lab, 3, op, json!({ field: [], "width": w, "height": h })).unwrap_err();
        assert!(e.to_string().contains("is empty or larger than blindspot reads (at most 64 megapixels)"), "{op} {w}x{h}: {e}");
    }
    let e = ask(&lab, 3, "planes", json!({ "rgba": [], "width": 1u64 << 31, "height": 1u64 << 31, "channels": 3 })).unwrap_err();
    assert!(e.to_string().contains("larger than blindspot reads"), "{e}");
    // numbers out of their range in the paper's helpers and the baselines
    for (op, payload, message) in [
        ("paperTargets", json!({ "labels": [3], "indices": [0], "classes": 1 }), "targets need at least 2 classes, not 1"),
        ("paperTargets", json!({ "labels": [12], "indices": [0] }), "label 12 is not one of the 10 classes"),
        ("amplified", json!({ "originals": [[0.5, 0.5]], "adversarials": [[0.5]], "to": 0.1 }), "each example needs an original of its size"),
        ("amplified", json!({ "originals": [[0.5]], "adversarials": [[0.6]], "to": -1.0 }), "must be a finite number of at least 0, not -1"),
        ("paperNoise", json!({ "images": [[0.5]], "stddevs": [0.1, -0.3] }), "a standard deviation must be a finite number of at least 0, not -0.3"),
        ("baseline", json!({ "key": "m", "pixels": pixels, "target": 3, "epsilon": 0.1, "steps": 1_000_000 }), "PGD runs at most 10000 steps"),
        ("gradient", json!({ "key": "m", "objective": "ce", "pixels": pixels, "target": 12 }), "target 12 is not a class of this model: pick one from 0 to 9"),
        ("gradient", json!({ "key": "m", "objective": "ce", "pixels": [0.5], "target": 1 }), "the image has 1 values but the model takes 784"),
    ] {
        let e = ask(&lab, 5, op, payload).unwrap_err();
        assert!(matches!(e, Error::Input(_)) && e.to_string().contains(message), "{op}: {e}");
    }
    // and the lab still answers
    assert!(ask(&lab, 4, "classify", json!({ "key": "m", "pixels": pixels })).is_ok());
}

#[test]
fn the_attack_through_the_protocol_is_the_clis_attack_with_its_defaults() {
    let lab = Lab::new();
    load(&lab, "cnn", "cnn");
    let model = Classifier::load(&bytes("cnn"), None).unwrap();
    let digits = pack();
    for (digit, target) in [(0usize, 3usize), (1, 8)] {
        let x = digits.input(digit);
        // no maxIterations or cSteps: the protocol's defaults are the CLI's (Options::default)
        let answer = ask(&lab, 2, "attack", json!({ "key": "cnn", "pixels": x, "target": target })).unwrap();
        let direct = lbfgs::attack(&model, &x, Goal::Target(target), &Options::default(), |_| true).unwrap();
        assert_eq!(answer["distortion"].as_f64().unwrap(), direct.distortion, "digit {digit}: the same optimiser path");
        assert_eq!(answer["iterations"], json!(direct.iterations));
        assert_eq!(answer["gradientEvaluations"], json!(direct.gradient_evaluations));
        assert_eq!(answer["success"], json!(direct.success));
        assert_eq!(answer["label"], json!(direct.label));
        assert_eq!(answer["c"].as_f64(), direct.c);
        assert_eq!(answer["backend"], json!("cpu"));
        assert_eq!(floats(&answer["adversarial"]), direct.adversarial);
    }
    // untargeted (target null): away from the model's own answer
    let x = digits.input(2);
    let answer = ask(&lab, 3, "attack", json!({ "key": "cnn", "pixels": x, "target": null, "maxIterations": 40, "cSteps": 2 })).unwrap();
    let label = model.classify(&x).unwrap().label;
    let options = Options { max_iterations: 40, c_steps: 2, ..Options::default() };
    let direct = lbfgs::attack(&model, &x, Goal::Untargeted { label }, &options, |_| true).unwrap();
    assert_eq!(answer["distortion"].as_f64().unwrap(), direct.distortion);
    assert_ne!(answer["label"], json!(label));
}

/// A host that records progress and, at its `cancel_at`-th pause (the worker's event loop, where
/// a cancel message is read), cancels request `id`.
struct Canceller<'a> {
    lab: &'a Lab,
    id: u64,
    cancel_at: usize,
    pauses: Cell<usize>,
    events: RefCell<Vec<Progress>>,
}

impl Host for Canceller<'_> {
    fn progress(&self, event: Progress) {
        self.events.borrow_mut().push(event);
    }
    fn pause(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        self.pauses.set(self.pauses.get() + 1);
        if self.pauses.get() == self.cancel_at {
            self.lab.cancel(self.id);
        }
        Box::pin(std::future::ready(()))
    }
}

#[test]
fn a_cancel_stops_the_attack_at_its_next_iteration_and_keeps_everything_loaded() {
    let lab = Lab::new();
    load(&lab, "cnn", "cnn");
    let digits = pack();
    let x = digits.input(1);
    let host = Canceller { lab: &lab, id: 7, cancel_at: 2, pauses: Cell::new(0), events: RefCell::default() };
    let started = std::time::Instant::now();
    let cancelled = ask_with(&lab, 7, "attack", json!({ "key": "cnn", "pixels": x, "target": 8 }), &host).unwrap_err();
    assert_eq!(cancelled, Error::Cancelled);
    assert_eq!(host.pauses.get(), 2, "no pause after the cancel: the attack stopped at once");
    let Some(Progress::Attack { iteration, .. }) = host.events.borrow().last().cloned() else {
        panic!("attack progress was reported");
    };
    let full = ask(&lab, 8, "attack", json!({ "key": "cnn", "pixels": x, "target": 8 })).unwrap();
    assert!(
        iteration < full["iterations"].as_u64().unwrap() as usize,
        "cancelled at iteration {iteration} of {}",
        full["iterations"]
    );
    println!("cancelled after {:.0} ms, at iteration {iteration}", started.elapsed().as_secs_f64() * 1000.0);
    // nothing was lost: the model answers the next request without being loaded again
    assert_eq!(lab.loaded(), vec!["cnn".to_string()]);
    let label = ask(&lab, 9, "classify", json!({ "key": "cnn", "pixels": x })).unwrap()["label"].clone();
    assert_eq!(label, json!(Classifier::load(&bytes("cnn"), None).unwrap().classify(&x).unwrap().label));
    // a cancel for a request that is not running is ignored: the next one with that id runs
    lab.cancel(10);
    assert!(ask(&lab, 10, "attack", json!({ "key": "cnn", "pixels": x, "target": 8, "maxIterations": 5, "cSteps": 0 })).is_ok());
}

#[test]
fn progress_is_reported_as_the_page_reads_it() {
    let lab = Lab::new();
    load(&lab, "m", "fc100-100-10");
    let host = Canceller { lab: &lab, id: 0, cancel_at: usize::MAX, pauses: Cell::new(0), events: RefCell::default() };
    let answer = ask_with(&lab, 2, "attack", json!({ "key": "m", "pixels": pack().input(0), "target": 3 }), &host).unwrap();
    let events = host.events.borrow();
    assert!(!events.is_empty() && events.len() <= answer["iterations"].as_u64().unwrap() as usize);
    let first = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(first.as_object().unwrap().keys().collect::<Vec<_>>(), ["c", "distortion", "iteration", "loss"]);
    assert_eq!(first["c"], json!(1.0), "the search starts at c = 1");
}

#[test]
fn the_same_file_loaded_again_keeps_its_activations_and_other_bytes_replace_it() {
    let lab = Lab::new();
    load(&lab, "m", "fc100-100-10");
    let digits = pack();
    let tensors = ask(&lab, 2, "tensors", json!({ "key": "m" })).unwrap();
    let tensor = tensors[0]["name"].as_str().unwrap().to_string();
    let images: Vec<f32> = (0..20).flat_map(|i| digits.input(i)).collect();
    let set = json!({ "key": "m", "tensor": tensor, "set": "s", "images": images, "fresh": true });
    assert_eq!(ask(&lab, 3, "activations", set).unwrap()["count"], json!(20));
    let rank = json!({ "key": "m", "tensor": tensor, "set": "s", "unit": 0, "seed": 1, "k": 3 });
    let before = ask(&lab, 4, "rank", rank.clone()).unwrap();
    assert_eq!(before["unit"].as_array().unwrap().len(), 3);
    load(&lab, "m", "fc100-100-10"); // another panel, or the model picked again
    assert_eq!(ask(&lab, 5, "rank", rank.clone()).unwrap(), before);
    load(&lab, "m", "fc200-200-10"); // other bytes under the same key: a new model
    let gone = ask(&lab, 6, "rank", rank).unwrap_err().to_string();
    assert!(gone.contains("no activations of"), "{gone}");
}

#[test]
fn gradients_and_the_stateless_requests_answer_what_the_core_answers() {
    let lab = Lab::new();
    load(&lab, "m", "fc100-100-10");
    let model = Classifier::load(&bytes("fc100-100-10"), None).unwrap();
    let x = pack().input(4);
    for objective in ["ce", "margin"] {
        let answer = ask(&lab, 2, "gradient", json!({ "key": "m", "objective": objective, "pixels": x, "target": 6 })).unwrap();
        let graph = model.gradient(&blindspot::grad::Objective::parse(objective).unwrap()).unwrap();
        let direct = graph.evaluate(&x, &graph.one_hot(6).unwrap()).unwrap();
        assert_eq!(floats(&answer["gradient"]), direct.gradient, "{objective}");
        assert_eq!(answer["objective"].as_f64().unwrap() as f32, direct.objective);
        assert_eq!(answer["backend"], json!("cpu"));
    }
    let bad = ask(&lab, 3, "gradient", json!({ "key": "m", "objective": "hinge", "pixels": x, "target": 6 })).unwrap_err();
    assert_eq!(bad.to_string(), "bad input: unknown objective \"hinge\": use ce or margin");
    let digits = pack();
    let labels: Vec<u8> = digits.labels[..6].to_vec();
    let targets = ask(&lab, 4, "paperTargets", json!({ "labels": labels, "indices": [0, 1, 2, 3, 4, 5] })).unwrap();
    let expected: Vec<usize> =
        (0..6).map(|i| blindspot::paper::target_for(labels[i] as usize, i, blindspot::paper::SEED, 10)).collect();
    assert_eq!(targets, json!(expected), "the seed defaults to the tables' (2013)");
    let (x0, x1) = (digits.input(0), digits.input(1));
    let d = ask(&lab, 6, "distortion", json!({ "originals": [x0, x0], "images": [x0, x1] })).unwrap();
    assert_eq!(d, json!([0.0, blindspot::attack::metrics::distortion(&x0, &x1)]));
    let fgsm = ask(&lab, 5, "baseline", json!({ "key": "m", "pixels": x, "target": null, "epsilon": 0.2 })).unwrap();
    let label = model.classify(&x).unwrap().label;
    let direct = blindspot::attack::baselines::fgsm(&model, &x, Goal::Untargeted { label }, 0.2).unwrap();
    assert_eq!(fgsm["distortion"].as_f64().unwrap(), direct.distortion);
    assert!(fgsm.get("backend").is_none());
    // a transfer cell: the digits themselves and the FGSM example, with their true labels
    let images = vec![x0.clone(), x1.clone(), direct.adversarial.clone()];
    let truth = vec![digits.labels[0] as usize, digits.labels[1] as usize, label];
    let answers: Vec<usize> = images.iter().map(|x| model.classify(x).unwrap().label).collect();
    let wrong = answers.iter().zip(&truth).filter(|(a, t)| a != t).count();
    assert!(wrong >= 1, "the FGSM example at 0.2 fools the model: {answers:?} for {truth:?}");
    let cell = ask(&lab, 7, "transfer", json!({ "key": "m", "images": images, "labels": truth })).unwrap();
    assert_eq!(cell, json!({ "errorRate": wrong as f64 / 3.0, "labels": answers }));
    let short = ask(&lab, 8, "transfer", json!({ "key": "m", "images": [x0], "labels": [] })).unwrap_err();
    assert_eq!(short.to_string(), "bad input: 0 labels for 1 images");
}

/// The `table` request (what `blindspot table1/2/3` ask) against the page's own way to a table:
/// a cell at a time, from `attack`, `transfer` and `paperNoise` requests.
#[test]
fn the_table_request_is_the_tables_cell_by_cell() {
    let lab = Lab::new();
    load(&lab, "a", "fc10-1");
    load(&lab, "b", "fc100-100-10");
    let digits = pack();
    let pack_bytes = std::fs::read(format!("{ROOT}/models/data/mnist-test-1k.bin")).unwrap();
    let n = 3;
    let one = ask(&lab, 1, "table", json!({ "table": 1, "keys": ["a"], "pack": pack_bytes, "n": n })).unwrap();
    let row = &one[0];
    assert_eq!(row["digits"], json!(n));
    let mut adversarial = vec![];
    for i in 0..n {
        let label = digits.labels[i] as usize;
        let target = blindspot::paper::target_for(label, i, blindspot::paper::SEED, 10);
        let single = ask(&lab, 2, "attack", json!({ "key": "a", "pixels": digits.input(i), "target": target })).unwrap();
        let cell = &row["attacks"][i];
        assert_eq!((cell["digit"].clone(), cell["label"].clone(), cell["target"].clone()), (json!(i), json!(label), json!(target)));
        assert_eq!(cell["success"], single["success"], "digit {i}");
        assert_eq!(cell["distortion"], single["distortion"], "digit {i}");
        assert!(cell.get("adversarial").is_none(), "a table does not carry the examples");
        adversarial.push(floats(&single["adversarial"]));
    }
    let successes = (0..n).filter(|&i| row["attacks"][i]["success"] == json!(true)).count();
    assert_eq!(row["successes"], json!(successes));

    let two = ask(&lab, 3, "table", json!({ "table": 2, "keys": ["a", "b"], "pack": pack_bytes, "n": n })).unwrap();
    let rows = two["rows"].as_array().unwrap();
    let examples: Vec<&str> = rows.iter().map(|r| r["examples"].as_str().unwrap()).collect();
    assert_eq!(examples, ["a", "b", "noise 0.1", "noise 0.3"]);
    let labels: Vec<usize> = (0..n).map(|i| digits.labels[i] as usize).collect();
    for (col, key) in ["a", "b"].iter().enumerate() {
        let cell = ask(&lab, 4, "transfer", json!({ "key": key, "images": adversarial, "labels": labels })).unwrap();
        assert_eq!(rows[0]["errorRates"][col], cell["errorRate"], "examples made for a, fed to {key}");
    }
    assert_eq!(rows[0]["distortion"], row["meanDistortion"]);
    let originals: Vec<Vec<f32>> = (0..n).map(|i| digits.input(i)).collect();
    let noise = ask(&lab, 5, "paperNoise", json!({ "images": originals, "stddevs": [0.1, 0.3] })).unwrap();
    for (k, stddev) in ["noise 0.1", "noise 0.3"].iter().enumerate() {
        let cell = ask(&lab, 6, "transfer", json!({ "key": "b", "images": noise[k], "labels": labels })).unwrap();
        assert_eq!(rows[2 + k]["errorRates"][1], cell["errorRate"], "{stddev}, fed to b");
    }

    let e = ask(&lab, 7, "table", json!({ "table": 3, "keys": ["a", "b"], "pack": pack_bytes, "n": n })).unwrap_err();
    assert!(e.to_string().contains("Table 3 takes three models"), "{e}");
    let e = ask(&lab, 8, "table", json!({ "table": 5, "keys": ["a"], "pack": pack_bytes, "n": n })).unwrap_err();
    assert!(e.to_string().contains("there is no Table 5 to compute here: ask for 1, 2 or 3"), "{e}");
    let e = ask(&lab, 9, "table", json!({ "table": 1, "keys": ["nowhere"], "pack": pack_bytes, "n": n })).unwrap_err();
    assert!(e.to_string().contains("no model \"nowhere\" is loaded here"), "{e}");
}

#[test]
fn a_request_the_protocol_does_not_know_is_refused_by_name() {
    let unknown = serde_json::from_value::<Request>(json!({ "clasify": { "key": "m" } })).unwrap_err().to_string();
    assert!(unknown.contains("unknown variant `clasify`") && unknown.contains("classify"), "{unknown}");
    let field = serde_json::from_value::<Request>(json!({ "classify": { "key": "m", "pixel": [] } })).unwrap_err().to_string();
    assert!(field.contains("unknown field `pixel`"), "{field}");
    let missing = serde_json::from_value::<Request>(json!({ "noise": { "key": "m", "pixels": [] } })).unwrap_err().to_string();
    assert!(missing.contains("missing field `distortion`"), "{missing}");
}

#[test]
fn table_5_reaches_the_page_as_it_reads_it() {
    let lab = Lab::new();
    load(&lab, "m", "fc100-100-10");
    let answer = ask(&lab, 2, "lipschitz", json!({ "key": "m" })).unwrap();
    let direct = blindspot::spectral::lipschitz(&Classifier::load(&bytes("fc100-100-10"), None).unwrap()).unwrap();
    assert_eq!(answer["product"].as_f64(), direct.product);
    assert_eq!(answer["markdown"], json!(direct.markdown()));
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), direct.rows.len());
    for (row, r) in rows.iter().zip(&direct.rows) {
        assert_eq!(row["node"], json!(r.node));
        assert_eq!(row["bound"].as_f64(), Some(r.bound));
        let then: Vec<(String, f64)> =
            row["then"].as_array().unwrap().iter().map(|t| (t["what"].as_str().unwrap().to_string(), t["factor"].as_f64().unwrap())).collect();
        assert_eq!(then, r.then, "then as {{ what, factor }} objects");
    }
}

/// The 60,000 training digits as the page sends them (the gzipped pack, unpacked).
fn training_pack() -> Vec<u8> {
    let packed = std::fs::read(format!("{ROOT}/models/data/mnist-train-60k.bin.gz")).unwrap();
    let mut raw = vec![];
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut raw).unwrap();
    raw
}

fn test_pack() -> Vec<u8> {
    std::fs::read(format!("{ROOT}/models/data/mnist-test-1k.bin")).unwrap()
}

/// The page's "Fix the blind spot" run: FC100-100-10 from scratch, trained through the protocol,
/// is the core's Trainer run with the same settings, step for step; it reports each step, each
/// epoch with the model of that moment, and answers with the trained model loaded under its key.
#[test]
fn the_train_request_is_the_trainers_run_and_loads_the_trained_model() {
    use blindspot::train::{Optimizer, Settings, Trainer};
    let lab = Lab::new();
    let host = Canceller { lab: &lab, id: 0, cancel_at: usize::MAX, pauses: Cell::new(0), events: RefCell::default() };
    let (pack, test) = (training_pack(), test_pack());
    let payload = json!({
        "key": "trained", "bytes": bytes("fc100-100-10"), "fromScratch": true, "pack": pack, "testPack": test,
        "n": 3200, "epochs": 2, "batch": 32, "lr": 0.1, "weightDecay": 1e-5, "seed": 5,
    });
    let answer = ask_with(&lab, 3, "train", payload, &host).unwrap();
    let epochs = answer["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    assert_eq!(answer["steps"], json!(200), "3,200 digits in batches of 32, twice");
    let first = epochs[0]["testError"].as_f64().unwrap();
    let last = epochs[1]["testError"].as_f64().unwrap();
    assert!(last < 0.2, "from scratch, 2 epochs on 3,200 digits: {last} test error");
    assert!(epochs[1]["loss"].as_f64().unwrap() < epochs[0]["loss"].as_f64().unwrap(), "{epochs:?}");
    println!("test error {first} then {last}");
    let model: Vec<u8> = answer["model"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();

    // the same run straight through the core: the same weights, bit for bit
    let settings = Settings { learning_rate: 0.1, optimizer: Optimizer::parse("sgd").unwrap(), weight_decay: 1e-5, batch: 32, seed: 5, cosine_steps: None };
    let mut trainer = Trainer::new(&bytes("fc100-100-10"), settings).unwrap();
    trainer.initialise(5);
    let digits = DigitPack::parse(&pack).unwrap();
    let (x, y): (Vec<f32>, Vec<usize>) = (digits.inputs(0..3200), digits.labels[..3200].iter().map(|&l| l as usize).collect());
    for _ in 0..2 {
        trainer.epoch(&x, &y, |_, _| true).unwrap();
    }
    assert!(trainer.write_onnx(&bytes("fc100-100-10")).unwrap() == model, "the protocol's run is the Trainer's");

    // progress: steps (throttled) and one event per epoch with the model of that moment
    let events = host.events.borrow();
    let steps = events.iter().filter(|e| matches!(e, Progress::Step { .. })).count();
    assert!(steps >= 2 && steps <= 200, "{steps} step events");
    let epoch_models: Vec<&Vec<u8>> = events.iter().filter_map(|e| if let Progress::Epoch { model, .. } = e { Some(model) } else { None }).collect();
    assert_eq!(epoch_models.len(), 2);
    assert!(*epoch_models[1] == model && *epoch_models[0] != model, "each epoch's own weights");
    let first_event = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(first_event.as_object().unwrap().keys().collect::<Vec<_>>(), ["epoch", "loss", "pool", "step", "steps"]);

    // the trained model is loaded under its key and answers as its file does
    assert_eq!(answer["classes"], json!(10));
    let x0 = DigitPack::parse(&test).unwrap().input(0);
    let label = ask(&lab, 4, "classify", json!({ "key": "trained", "pixels": x0 })).unwrap()["label"].clone();
    assert_eq!(label, json!(Classifier::load(&model, None).unwrap().classify(&x0).unwrap().label));
}

/// With the paper's pool, the examples entering it reach the page: adversarial images, each
/// with its true label and the class it was pushed to; a cancel stops the run and loads nothing.
#[test]
fn a_training_run_shows_its_pool_and_stops_at_a_cancel() {
    let lab = Lab::new();
    let host = Canceller { lab: &lab, id: 0, cancel_at: usize::MAX, pauses: Cell::new(0), events: RefCell::default() };
    let (pack, test) = (training_pack(), test_pack());
    let payload = json!({
        "key": "pooled", "bytes": bytes("fc100-100-10"), "pack": pack, "testPack": test,
        "n": 320, "batch": 32, "lr": 0.01, "adversarial": "lbfgs", "pool": 6, "refresh": 0.5,
    });
    let answer = ask_with(&lab, 3, "train", payload.clone(), &host).unwrap();
    assert_eq!(answer["epochs"][0]["pool"], json!(6));
    let events = host.events.borrow();
    let Some(Progress::Pool { entered, pool, examples }) = events.iter().find(|e| matches!(e, Progress::Pool { .. })).cloned() else {
        panic!("the pool's examples were reported")
    };
    assert_eq!((entered, pool), (6, 6), "the pool is filled first");
    let model = Classifier::load(&bytes("fc100-100-10"), None).unwrap();
    for e in &examples {
        assert_eq!(e.image.len(), 784);
        assert_ne!(e.label, e.target);
        assert_eq!(model.classify(&e.image).unwrap().label, e.target, "each fooled the model it was made for");
    }
    drop(events);

    let canceller = Canceller { lab: &lab, id: 9, cancel_at: 2, pauses: Cell::new(0), events: RefCell::default() };
    let mut slow = payload;
    slow["key"] = json!("cancelled");
    slow["adversarial"] = json!("none");
    slow["n"] = json!(60_000);
    assert_eq!(ask_with(&lab, 9, "train", slow, &canceller).unwrap_err(), Error::Cancelled);
    assert!(!lab.loaded().contains(&"cancelled".to_string()), "a cancelled run loads nothing");
    assert!(!canceller.events.borrow().iter().any(|e| matches!(e, Progress::Epoch { .. })), "it stopped within the first epoch");
}

/// Settings the page could send that cannot train are refused with what to do.
#[test]
fn a_training_request_with_bad_settings_says_what_to_change() {
    let lab = Lab::new();
    let (pack, test) = (training_pack(), test_pack());
    let base = json!({ "key": "k", "bytes": bytes("fc100-100-10"), "pack": pack, "testPack": test, "n": 64 });
    let cases = [
        (json!({ "adversarial": "layers", "bytes": bytes("cnn") }), "per-layer pools attack hidden layers whose outputs lie in (0,1)"),
        (json!({ "adversarial": "lbfgs", "poolWeight": 1.0 }), "the pool's share of the loss is a fraction above 0 and below 1, not 1"),
        (json!({ "adversarial": "mixup" }), "\"mixup\" is not one of none, fgsm, lbfgs, layers"),
        (json!({ "lr": -1.0 }), "the learning rate must be a positive number, not -1"),
        (json!({ "optimizer": "rmsprop" }), "unknown optimizer \"rmsprop\": use sgd or adam"),
        (json!({ "batch": 128 }), "64 training images do not fill one batch of 128"),
        (json!({ "epochs": 0 }), "a run trains 1 to 1,000 epochs, not 0"),
        (json!({ "adversarial": "fgsm", "epsilon": 3.0 }), "FGSM's epsilon is a step in pixel units, above 0 and at most 1, not 3"),
    ];
    for (change, wanted) in cases {
        let mut payload = base.clone();
        payload.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        let error = ask(&lab, 1, "train", payload).unwrap_err().to_string();
        assert!(error.contains(wanted), "{change}: {error}");
    }
    let mut larger = base.clone();
    larger["bytes"] = json!(std::fs::read(format!("{ROOT}/tests/fixtures/size-32.onnx")).unwrap());
    let error = ask(&lab, 1, "train", larger).unwrap_err().to_string();
    assert_eq!(
        error,
        "bad input: this model takes 1024 values an image; the digits have 784: train a model for 28x28 grey digits"
    );
}
