//! Declared preprocessing (src/preprocess.rs) on exporters' real graphs (tests/fixtures/exporters/):
//! a model loaded with its layout, channel order and range wired in, fed [0,1] RGB pixel planes,
//! gives the scores onnxruntime gives the file on the input those settings describe, computed here
//! by hand; its gradient is the chain rule through them; attacks stay in the [0,1] box.

use blindspot::attack::{baselines, Goal};
use blindspot::grad::Objective;
use blindspot::model::decode;
use blindspot::preprocess::{Channels, Layout, Preprocessing};
use blindspot::Classifier;
use ndarray::ArrayD;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixture(name: &str) -> (Vec<u8>, Value, Vec<f32>) {
    let dir = format!("{ROOT}/tests/fixtures/exporters");
    let manifest: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/expected.json")).unwrap()).unwrap();
    let entry = manifest.into_iter().find(|e| e["name"] == name).unwrap();
    let mut npz = ndarray_npy::NpzReader::new(std::fs::File::open(format!("{dir}/{name}.npz")).unwrap()).unwrap();
    let x: ArrayD<f32> = npz.by_name("x").unwrap();
    (std::fs::read(format!("{dir}/{name}.onnx")).unwrap(), entry, x.iter().copied().collect())
}

fn close(a: &[f32], b: &[f64], tol: f64) -> bool {
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| ((*x as f64) - y).abs() <= tol * scale)
}

#[test]
fn keras_nhwc_model_takes_pixel_planes() {
    // tf2onnx's Keras CNN declares [N, 32, 32, 3]: the suggestion is NHWC, RGB, [0,1]
    let (bytes, entry, x) = fixture("tf2onnx_keras_cnn_op13");
    let suggested = Preprocessing::suggested(&decode(&bytes).unwrap()).unwrap();
    assert_eq!((suggested.layout, suggested.channels), (Layout::Nhwc, Channels::Rgb));
    let model = Classifier::load_with(&bytes, None, &suggested).unwrap();
    assert_eq!(model.input_shape(), &[1, 3, 32, 32]);
    let raw = Classifier::load(&bytes, None).unwrap();
    assert_eq!(raw.input_shape(), &[1, 32, 32, 3]);
    let (h, w, c) = (32, 32, 3);
    for (i, image) in x.chunks(h * w * c).enumerate() {
        // the stored input is NHWC, as onnxruntime was fed it: planes are its transpose
        let mut planes = vec![0f32; image.len()];
        for y in 0..h {
            for xx in 0..w {
                for ch in 0..c {
                    planes[ch * h * w + y * w + xx] = image[(y * w + xx) * c + ch];
                }
            }
        }
        let ort: Vec<f64> = entry["onnxruntime"][i].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let ours = model.classify(&planes).unwrap();
        assert!(close(&ours.probabilities, &ort, 1e-5), "{:?} vs {ort:?}", ours.probabilities);
        // the gradient in pixel planes is the model-input gradient, transposed
        let target = entry["target"][i].as_u64().unwrap() as usize;
        let g_planes = model.gradient(&Objective::CrossEntropy).unwrap();
        let g_raw = raw.gradient(&Objective::CrossEntropy).unwrap();
        let a = g_planes.evaluate(&planes, &g_planes.one_hot(target).unwrap()).unwrap().gradient;
        let b = g_raw.evaluate(image, &g_raw.one_hot(target).unwrap()).unwrap().gradient;
        let largest = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        for y in 0..h {
            for xx in 0..w {
                for ch in 0..c {
                    let d = a[ch * h * w + y * w + xx] - b[(y * w + xx) * c + ch];
                    assert!(d.abs() <= 1e-5 * largest, "pixel ({ch},{y},{xx})");
                }
            }
        }
    }
}

#[test]
fn bgr_and_imagenet_normalisation_are_wired_in() {
    // a torch ResNet given BGR planes normalised with ImageNet's mean and std, as a Caffe-era
    // model would want: the same scores as the raw model fed that input by hand
    let (bytes, _, x) = fixture("torch_resnet_basic_op13");
    let pre = Preprocessing::parse("channels=bgr&range=imagenet").unwrap();
    let model = Classifier::load_with(&bytes, None, &pre).unwrap();
    let raw = Classifier::load(&bytes, None).unwrap();
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let plane = 32 * 32;
    for image in x.chunks(3 * plane) {
        let mut fed = vec![0f32; image.len()];
        for c in 0..3 {
            // model channel c holds colour 2 - c (B, G, R), normalised by that colour's statistics
            let colour = 2 - c;
            for i in 0..plane {
                fed[c * plane + i] = (image[colour * plane + i] - mean[colour]) / std[colour];
            }
        }
        let a = model.classify(image).unwrap().logits;
        let b: Vec<f64> = raw.classify(&fed).unwrap().logits.iter().map(|&v| v as f64).collect();
        assert!(close(&a, &b, 1e-5), "{a:?} vs {b:?}");
    }
    // 0-255 with a mean, and [-1, 1]: the same check on the first image's red plane scale
    for (query, scale, shift) in [("range=0-255&mean=100&std=2", 127.5f32, -50.0f32), ("range=-1-1", 2.0, -1.0)] {
        let pre = Preprocessing::parse(query).unwrap();
        let model = Classifier::load_with(&bytes, None, &pre).unwrap();
        let fed: Vec<f32> = x[..3 * plane].iter().map(|p| p * scale + shift).collect();
        let a = model.classify(&x[..3 * plane]).unwrap().logits;
        let b: Vec<f64> = raw.classify(&fed).unwrap().logits.iter().map(|&v| v as f64).collect();
        assert!(close(&a, &b, 1e-5), "{query}: {a:?} vs {b:?}");
    }
}

#[test]
fn attacks_stay_in_the_pixel_box() {
    let (bytes, entry, x) = fixture("tf2onnx_keras_cnn_op13");
    let model = Classifier::load_with(&bytes, None, &Preprocessing::parse("layout=nhwc&range=0-255&mean=127.5&std=127.5").unwrap()).unwrap();
    let image: Vec<f32> = x[..3 * 32 * 32].to_vec();
    let target = entry["target"][0].as_u64().unwrap() as usize;
    let outcome = baselines::fgsm(&model, &image, Goal::Target(target), 0.05).unwrap();
    assert!(outcome.adversarial.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(outcome.linf <= 0.05 + 1e-6 && outcome.linf > 0.0, "linf {}", outcome.linf);
}

#[test]
fn impossible_settings_are_refused_naming_the_input() {
    let (bytes, _, _) = fixture("torch_resnet_basic_op13");
    let grey = Classifier::load_with(&bytes, None, &Preprocessing::parse("channels=grey").unwrap()).unwrap_err().to_string();
    assert!(grey.contains("has 3 channels") && grey.contains("needs 1"), "{grey}");
    let nhwc = Classifier::load_with(&bytes, None, &Preprocessing::parse("layout=nhwc").unwrap()).unwrap_err().to_string();
    assert!(nhwc.contains("channels at the Nhwc channel axis"), "{nhwc}");
    let mean = Classifier::load_with(&bytes, None, &Preprocessing::parse("mean=0.5,0.5").unwrap()).unwrap_err().to_string();
    assert!(mean.contains("mean has 2 values; the model has 3 channels"), "{mean}");
    let (mlp, _, _) = fixture("skl2onnx_mlp_op17");
    let flat = Classifier::load_with(&mlp, None, &Preprocessing::parse("range=0-255").unwrap()).unwrap_err().to_string();
    assert!(flat.contains("has 2 axes"), "{flat}");
    // the identity leaves any graph alone, flat ones included
    assert!(Classifier::load_with(&mlp, None, &Preprocessing::default()).is_ok());
}
