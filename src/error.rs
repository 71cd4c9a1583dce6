//! Errors a person can act on: what went wrong, in words, naming the node, op or shape involved.

use std::fmt;

/// Everything the core can refuse, each with a message meant for the page and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not a readable ONNX model (empty, truncated, another format).
    NotOnnx(String),
    /// The model has operators tract cannot run: `(op, node)` pairs.
    UnsupportedOps(Vec<(String, String)>),
    /// Ops on the path from input to objective that have no gradient rule: `(op, node)` pairs.
    NoGradient(Vec<(String, String)>),
    /// The graph parsed but cannot be used as an image classifier (inputs, outputs, shapes).
    Model(String),
    /// A caller handed in an input that does not fit the model (size, values).
    Input(String),
    /// A data file (digit pack, image, .npy) could not be read.
    Data(String),
    /// Evaluation failed inside the engine.
    Run(String),
    /// The caller cancelled a long computation.
    Cancelled,
    /// Any of these, about the file at this path (the CLI names the file it read).
    File(String, Box<Error>),
}

impl Error {
    /// What went wrong without the kind in front ("cannot use this model: ", "bad input: "), for a
    /// message that says its own context (a fallback's reason).
    pub fn detail(&self) -> String {
        match self {
            Error::NotOnnx(why) | Error::Model(why) | Error::Input(why) | Error::Data(why) | Error::Run(why) => why.clone(),
            other => other.to_string(),
        }
    }

    /// This error as one about the file at `path`.
    pub fn in_file(self, path: &str) -> Error {
        match self {
            Error::File(..) => self,
            other => Error::File(path.to_string(), Box::new(other)),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotOnnx(why) => write!(
                f,
                "not a readable ONNX model: {why}; blindspot reads .onnx files (torch.onnx.export, tf2onnx and skl2onnx \
                 write them): if this is one, it is damaged or cut short, so export or download it again"
            ),
            Error::UnsupportedOps(ops) => {
                write!(f, "the model uses operators blindspot cannot run: ")?;
                let list: Vec<String> =
                    ops.iter().map(|(op, node)| format!("{op} (node \"{node}\")")).collect();
                write!(
                    f,
                    "{}; re-export the model with these written as standard ONNX ops tract 0.23.9 runs (a custom op, or \
                     one newer than tract knows, has to be decomposed; docs/gradients.md lists the ops blindspot handles)",
                    list.join(", ")
                )
            }
            Error::NoGradient(ops) => {
                write!(f, "blindspot has no gradient rule for: ")?;
                let list: Vec<String> =
                    ops.iter().map(|(op, node)| format!("{op} (node \"{node}\")")).collect();
                write!(
                    f,
                    "{}; the model classifies, but cannot be attacked until these ops are re-exported as ones \
                     blindspot differentiates (docs/gradients.md lists them)",
                    list.join(", ")
                )
            }
            Error::Model(why) => write!(f, "cannot use this model: {why}"),
            Error::Input(why) => write!(f, "bad input: {why}"),
            Error::Data(why) => write!(f, "cannot read data: {why}"),
            Error::Run(why) => write!(f, "evaluation failed: {why}"),
            Error::Cancelled => write!(f, "cancelled"),
            Error::File(path, error) => write!(f, "{path}: {error}"),
        }
    }
}

impl std::error::Error for Error {}

/// tract failed running a graph it had accepted: its reason, and what to try.
pub(crate) fn run_failed(e: &tract_onnx::prelude::TractError) -> Error {
    Error::Run(format!(
        "{}; tract accepted the graph but failed running it: re-export it with opset 13 or later and constant \
         folding (onnx-simplifier), and if it still fails, report the model to blindspot",
        chain(e)
    ))
}

/// The whole context chain of a tract error on one line, outermost first.
pub(crate) fn chain(e: &tract_onnx::prelude::TractError) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}
