//! blindspot: load ONNX classifiers, classify and probe them; the core shared by the CLI and the page.

pub mod attack;
pub mod bench;
pub mod digits;
pub mod error;
pub mod gpu;
pub mod grad;
pub mod image;
pub mod lab;
mod mend;
pub mod model;
pub mod output;
pub mod preprocess;
pub mod rng;
pub mod units;
pub mod optim;
pub mod paper;
pub mod spectral;
pub mod train;
pub mod weights;
pub mod layers;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use digits::DigitPack;
pub use error::{Error, Result};
pub use model::{Classification, Classifier, Trainable};
pub use output::OutputKind;
