//! The CLI's contracts: `classify` and `grad` outputs, files and errors.

use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn blindspot(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_blindspot")).args(args).current_dir(ROOT).output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn digit_npy(dir: &std::path::Path) -> String {
    let pack = blindspot::DigitPack::parse(&std::fs::read(format!("{ROOT}/models/data/mnist-test-1k.bin")).unwrap()).unwrap();
    let x = ndarray::ArrayD::from_shape_vec(vec![1, 1, 28, 28], pack.input(0)).unwrap();
    let path = dir.join("digit0.npy");
    ndarray_npy::write_npy(&path, &x).unwrap();
    path.to_str().unwrap().to_string()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("blindspot-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn classify_prints_a_json_line_per_image() {
    let dir = temp_dir("classify");
    let input = digit_npy(&dir);
    let (ok, out, err) = blindspot(&["classify", "models/cnn.onnx", &input, &input]);
    assert!(ok, "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["label"], 7, "test digit 0 is a 7");
    let p: f64 = lines[0]["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((p - 1.0).abs() < 1e-5);
}

#[test]
fn grad_writes_the_gradient_and_prints_objective_and_logits() {
    let dir = temp_dir("grad");
    let input = digit_npy(&dir);
    let out_path = dir.join("g.npy");
    let (ok, out, err) = blindspot(&["grad", "models/fc100-100-10.onnx", &input, "--target", "3", "--objective", "margin", "--out", out_path.to_str().unwrap()]);
    assert!(ok, "{err}");
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["objective"], "margin");
    assert_eq!(line["target"], 3);
    assert_eq!(line["logits"].as_array().unwrap().len(), 10);
    let g: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&out_path).unwrap();
    assert_eq!(g.shape(), &[1, 1, 28, 28]);
    // the same numbers as the library
    let model = blindspot::Classifier::load(&std::fs::read(format!("{ROOT}/models/fc100-100-10.onnx")).unwrap(), None).unwrap();
    let grad = model.gradient(&blindspot::grad::Objective::Margin).unwrap();
    let x: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&input).unwrap();
    let eval = grad.evaluate(x.as_slice().unwrap(), &grad.one_hot(3).unwrap()).unwrap();
    assert_eq!(g.as_slice().unwrap(), eval.gradient.as_slice());
    assert!((line["value"].as_f64().unwrap() - eval.objective as f64).abs() < 1e-6);
}

#[test]
fn grad_refuses_bad_arguments_clearly() {
    let dir = temp_dir("bad");
    let input = digit_npy(&dir);
    let (ok, _, err) = blindspot(&["grad", "models/cnn.onnx", &input]);
    assert!(!ok);
    assert!(err.contains("grad needs --target K"), "{err}");
    let (ok, _, err) = blindspot(&["grad", "models/cnn.onnx", &input, "--target", "10"]);
    assert!(!ok);
    assert!(err.contains("target 10 is not a class (0..9)"), "{err}");
    let (ok, _, err) = blindspot(&["grad", "models/cnn.onnx", &input, "--target", "1", "--objective", "hinge"]);
    assert!(!ok);
    assert!(err.contains("unknown objective \"hinge\""), "{err}");
    let wrong = dir.join("wrong.npy");
    ndarray_npy::write_npy(&wrong, &ndarray::ArrayD::<f32>::zeros(vec![1, 3, 28, 28])).unwrap();
    let (ok, _, err) = blindspot(&["grad", "models/cnn.onnx", wrong.to_str().unwrap(), "--target", "1"]);
    assert!(!ok);
    assert!(err.contains("input shape [1, 3, 28, 28] does not fit the graph"), "{err}");
}

#[test]
fn table1_prints_markdown_with_the_papers_figures() {
    let (ok, out, err) = blindspot(&["table1", "--n", "6", "--models", "fc10-1,fc100-100-10"]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(rows[0].starts_with("| model | train err | test err | av. min. distortion"));
    assert!(rows[2].starts_with("| FC10(1) | 21.68% | 20.31% | 0."), "{}", rows[2]);
    assert!(rows[2].ends_with("| 6/6 | 21.20% | 20.00% | 0.14 |"), "{}", rows[2]);
    let distortion: f64 = rows[3].split('|').nth(4).unwrap().trim().parse().unwrap();
    assert!(distortion > 0.01 && distortion < 0.15, "{}", rows[3]);
}

#[test]
fn attack_writes_an_example_that_reaches_the_target() {
    let dir = temp_dir("attack");
    let input = digit_npy(&dir);
    let out_path = dir.join("adv.npy");
    let (ok, out, err) = blindspot(&["attack", "models/fc10-1e-4.onnx", &input, "--target", "3", "--out", out_path.to_str().unwrap()]);
    assert!(ok, "{err}");
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["success"], true);
    assert_eq!(line["label"], 3);
    let adv: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&out_path).unwrap();
    let model = blindspot::Classifier::load(&std::fs::read(format!("{ROOT}/models/fc10-1e-4.onnx")).unwrap(), None).unwrap();
    assert_eq!(model.classify(adv.as_slice().unwrap()).unwrap().label, 3);
    assert!(adv.iter().all(|v| (0.0..=1.0).contains(v)));
    for method in [&["--method", "fgsm", "--epsilon", "0.2"][..], &["--method", "pgd", "--norm", "l2", "--epsilon", "3"][..]] {
        let mut a = vec!["attack", "models/fc10-1e-4.onnx", input.as_str(), "--target", "any", "--out", out_path.to_str().unwrap()];
        a.extend_from_slice(method);
        let (ok, out, err) = blindspot(&a);
        assert!(ok, "{err}");
        let line: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["target"], "any");
        assert_eq!(line["method"], method[1]);
    }
    let (ok, _, err) = blindspot(&["attack", "models/fc10-1e-4.onnx", &input, "--target", "3", "--method", "deepfool"]);
    assert!(!ok && err.contains("unknown method \"deepfool\""), "{err}");
}

#[test]
fn table2_and_table3_print_transfer_tables() {
    let (ok, out, err) = blindspot(&["table2", "--n", "5"]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 2 + 6 + 2, "{out}");
    // examples made for a model fool that model every time
    assert!(rows[2].starts_with("| FC10(1e-4) (distortion 0.") && rows[2].contains("| 100.0% (100%) |"), "{}", rows[2]);
    assert!(rows[9].starts_with("| Gaussian noise, stddev 0.3 |"), "{}", rows[9]);
    let (ok, out, err) = blindspot(&["table3", "--n", "5"]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 5, "{out}");
    assert!(rows[2].starts_with("| adversarial | 0.") && rows[2].contains("| 100.0% (100%) |"), "{}", rows[2]);
    // scaled to distortion 0.1, then clipped to the box, which can only shrink it
    assert!(rows[3].starts_with("| amplified to distortion 0.1 |"), "{}", rows[3]);
    let d: f64 = rows[3].split('|').nth(2).unwrap().trim().parse().unwrap();
    assert!((0.09..=0.1).contains(&d), "{}", rows[3]);
}
