//! A model's preprocessing, declared (layout, channel order, value range, mean/std) and wired into
//! its ONNX graph in front of the input, so every gradient and attack works in [0,1] pixel planes.
//!
//! The pixel space is always channels-first planes in R, G, B order (or one grey plane), values in
//! [0, 1]: what the page draws and the attack's box. In front of the model's own input the graph
//! gets, in this order:
//!
//! 1. `Mul`/`Add` by per-channel constants: `value = (range(p) - mean) / std`, where `range` maps
//!    [0,1] to [0,1], [0,255] or [-1,1], and mean/std are in R, G, B order in the range's units
//!    (`imagenet` is [0,1] with torchvision's mean and std);
//! 2. `Gather` of the channels in B, G, R order for a BGR model;
//! 3. `Transpose` to channels-last for an NHWC model.
//!
//! Defaults come from the input's shape (a last axis of 1 or 3 means NHWC) and from Windows ML's
//! image metadata where the file has it (`Image.BitmapPixelFormat`, `Image.NominalPixelRange`).

use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;

use crate::error::{Error, Result};

/// Where the channel axis is in the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

impl Layout {
    /// The channel axis of a 4-D input in this layout.
    pub fn channel_axis(self) -> usize {
        match self {
            Layout::Nchw => 1,
            Layout::Nhwc => 3,
        }
    }
}

/// What the model's channels hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    Grey,
    Rgb,
    Bgr,
}

/// The value range [0,1] pixels are mapped to before mean and std.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Unit,
    Byte,
    Signed,
}

/// The declared preprocessing of one model (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    pub layout: Layout,
    pub channels: Channels,
    pub range: Range,
    /// Subtracted after the range, per channel in R, G, B order (one value: every channel).
    pub mean: Vec<f32>,
    /// Divided by after the mean.
    pub std: Vec<f32>,
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Default for Preprocessing {
    fn default() -> Self {
        Preprocessing { layout: Layout::Nchw, channels: Channels::Rgb, range: Range::Unit, mean: vec![0.0], std: vec![1.0] }
    }
}

impl Preprocessing {
    /// Whether the graph is left exactly as it is (NCHW, [0,1], RGB or grey, no mean/std).
    pub fn is_identity(&self) -> bool {
        self.layout == Layout::Nchw
            && self.channels != Channels::Bgr
            && self.range == Range::Unit
            && self.mean.iter().all(|&m| m == 0.0)
            && self.std.iter().all(|&s| s == 1.0)
    }

    /// Parses `layout=nhwc&channels=bgr&range=0-255&mean=104,117,123&std=1` (any subset, in any
    /// order; `range=imagenet` sets [0,1] with ImageNet's mean and std). What the page's permalink
    /// and the CLI's flags carry.
    pub fn parse(query: &str) -> Result<Preprocessing> {
        let mut p = Preprocessing::default();
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| Error::Input(format!("preprocessing \"{pair}\" is not key=value")))?;
            p.set(key, value)?;
        }
        Ok(p)
    }

    /// Sets one setting by name: layout, channels, range, mean or std.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |what: &str| Error::Input(format!("{key} \"{value}\" is not {what}"));
        match key {
            "layout" => {
                self.layout = match value.to_ascii_lowercase().as_str() {
                    "nchw" => Layout::Nchw,
                    "nhwc" => Layout::Nhwc,
                    _ => return Err(bad("nchw or nhwc")),
                }
            }
            "channels" => {
                self.channels = match value.to_ascii_lowercase().as_str() {
                    "grey" | "gray" => Channels::Grey,
                    "rgb" => Channels::Rgb,
                    "bgr" => Channels::Bgr,
                    _ => return Err(bad("grey, rgb or bgr")),
                }
            }
            "range" => match value {
                "0-1" => self.range = Range::Unit,
                "0-255" => self.range = Range::Byte,
                "-1-1" => self.range = Range::Signed,
                "imagenet" => {
                    self.range = Range::Unit;
                    self.mean = IMAGENET_MEAN.to_vec();
                    self.std = IMAGENET_STD.to_vec();
                }
                _ => return Err(bad("0-1, 0-255, -1-1 or imagenet")),
            },
            "mean" | "std" => {
                let values: Vec<f32> = value
                    .split(',')
                    .map(|v| v.trim().parse::<f32>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| bad("a list of numbers like 0.485,0.456,0.406"))?;
                if values.is_empty() || values.iter().any(|v| !v.is_finite()) || (key == "std" && values.contains(&0.0)) {
                    return Err(bad("a list of finite numbers (std: none zero)"));
                }
                if key == "mean" {
                    self.mean = values
                } else {
                    self.std = values
                }
            }
            other => return Err(Error::Input(format!("unknown preprocessing setting \"{other}\" (layout, channels, range, mean, std)"))),
        }
        Ok(())
    }

    /// The query form [`Preprocessing::parse`] reads back, every setting spelled out.
    pub fn to_query(&self) -> String {
        let layout = match self.layout {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        };
        let channels = match self.channels {
            Channels::Grey => "grey",
            Channels::Rgb => "rgb",
            Channels::Bgr => "bgr",
        };
        let list = |v: &[f32]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
        if self.range == Range::Unit && self.mean == IMAGENET_MEAN && self.std == IMAGENET_STD {
            return format!("layout={layout}&channels={channels}&range=imagenet");
        }
        let range = match self.range {
            Range::Unit => "0-1",
            Range::Byte => "0-255",
            Range::Signed => "-1-1",
        };
        format!("layout={layout}&channels={channels}&range={range}&mean={}&std={}", list(&self.mean), list(&self.std))
    }

    /// What a file suggests: NHWC when the input's last axis is 1 or 3 and its second is not,
    /// grey for one channel, and Windows ML's image metadata where present.
    pub fn suggested(proto: &pb::ModelProto) -> Result<Preprocessing> {
        let graph = proto.graph.as_ref().ok_or_else(|| Error::NotOnnx("the file holds no graph".into()))?;
        let input = real_input(graph)?;
        let dims = declared_dims(input);
        let mut p = Preprocessing::default();
        if dims.len() == 4 {
            let channels_last = matches!(dims[3], Some(1 | 3)) && !matches!(dims[1], Some(1 | 3));
            p.layout = if channels_last { Layout::Nhwc } else { Layout::Nchw };
            if dims[p.layout.channel_axis()] == Some(1) {
                p.channels = Channels::Grey;
            }
        }
        for entry in &proto.metadata_props {
            match (entry.key.as_str(), entry.value.as_str()) {
                ("Image.BitmapPixelFormat", "Bgr8") => p.channels = Channels::Bgr,
                ("Image.BitmapPixelFormat", "Rgb8") => p.channels = Channels::Rgb,
                ("Image.BitmapPixelFormat", "Gray8") => p.channels = Channels::Grey,
                ("Image.NominalPixelRange", "NominalRange_0_255") => p.range = Range::Byte,
                ("Image.NominalPixelRange", "Normalized_0_1") => p.range = Range::Unit,
                ("Image.NominalPixelRange", "Normalized_1_1") => p.range = Range::Signed,
                _ => {}
            }
        }
        Ok(p)
    }

    /// The model input's shape for a pixel-planes shape [N, C, H, W] (and back: the same swap).
    pub fn model_shape(&self, pixels: &[usize]) -> Vec<usize> {
        match (self.layout, pixels) {
            (Layout::Nhwc, [n, c, h, w]) => vec![*n, *h, *w, *c],
            _ => pixels.to_vec(),
        }
    }

    /// The pixel-planes shape for the model's own input shape.
    pub fn pixel_shape(&self, model: &[usize]) -> Vec<usize> {
        match (self.layout, model) {
            (Layout::Nhwc, [n, h, w, c]) => vec![*n, *c, *h, *w],
            _ => model.to_vec(),
        }
    }

    /// Per-channel (scale, shift) in R, G, B order: value = pixel * scale + shift.
    fn affine(&self, c: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let pick = |v: &[f32], what: &str| -> Result<Vec<f32>> {
            match v.len() {
                1 => Ok(vec![v[0]; c]),
                n if n == c => Ok(v.to_vec()),
                n => Err(Error::Input(format!("{what} has {n} values; the model has {c} channels"))),
            }
        };
        let (mean, std) = (pick(&self.mean, "mean")?, pick(&self.std, "std")?);
        let (a, b) = match self.range {
            Range::Unit => (1.0, 0.0),
            Range::Byte => (255.0, 0.0),
            Range::Signed => (2.0, -1.0),
        };
        Ok(((0..c).map(|i| a / std[i]).collect(), (0..c).map(|i| (b - mean[i]) / std[i]).collect()))
    }

    /// Rewrites the graph: a new input `pixels` ([N, C, H, W], [0,1], R, G, B) and the nodes that
    /// make the model's own input from it. The identity changes nothing (a 4-D input's channel count
    /// is still checked against `channels`).
    pub fn wire(&self, proto: &mut pb::ModelProto) -> Result<()> {
        let opset_import = proto.opset_import.clone();
        let graph = proto.graph.as_mut().ok_or_else(|| Error::NotOnnx("the file holds no graph".into()))?;
        let input = real_input(graph)?.clone();
        let dims = declared_dims(&input);
        if self.is_identity() && dims.len() != 4 {
            return Ok(()); // nothing to wire, nothing to check: a flat input (an MLP) stays as it is
        }
        if dims.len() != 4 {
            return Err(Error::Model(format!(
                "input \"{}\" has {} axes; preprocessing (layout, channels, range) is for [N, C, H, W] or [N, H, W, C] images",
                input.name,
                dims.len()
            )));
        }
        let c = dims[self.layout.channel_axis()].ok_or_else(|| Error::Model(format!("input \"{}\" does not declare its channel count", input.name)))?;
        match (self.channels, c) {
            (Channels::Grey, 1) | (Channels::Rgb | Channels::Bgr, 3) => {}
            (channels, c) => {
                return Err(Error::Model(format!(
                    "input \"{}\" has {c} channels at the {:?} channel axis; {channels:?} needs {}: pick the other layout or channels",
                    input.name,
                    self.layout,
                    if channels == Channels::Grey { 1 } else { 3 }
                )))
            }
        }
        if self.is_identity() {
            return Ok(());
        }
        let opset = opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(1, |o| o.version);
        if opset < 7 {
            return Err(Error::Model(format!(
                "preprocessing can only be wired into graphs of opset 7 or later (this one is {opset}): re-export with opset 13 or later"
            )));
        }
        let taken = |name: &str| {
            graph.input.iter().any(|i| i.name == name)
                || graph.initializer.iter().any(|t| t.name == name)
                || graph.node.iter().any(|n| n.output.iter().any(|o| o == name))
        };
        let mut pixels = "pixels".to_string();
        while taken(&pixels) {
            pixels.push('_');
        }
        let (scale, shift) = self.affine(c as usize)?;
        let name = |what: &str| format!("{pixels}.{what}");
        let float = |n: String, values: &[f32]| pb::TensorProto {
            name: n,
            dims: vec![1, values.len() as i64, 1, 1],
            data_type: 1,
            float_data: values.to_vec(),
            ..Default::default()
        };
        let node = |op: &str, inputs: Vec<String>, output: String, attribute: Vec<pb::AttributeProto>| pb::NodeProto {
            name: output.clone(),
            op_type: op.into(),
            input: inputs,
            output: vec![output],
            attribute,
            ..Default::default()
        };
        let mut nodes = vec![
            node("Mul", vec![pixels.clone(), name("scale")], name("scaled"), vec![]),
            node("Add", vec![name("scaled"), name("shift")], name("shifted"), vec![]),
        ];
        graph.initializer.push(float(name("scale"), &scale));
        graph.initializer.push(float(name("shift"), &shift));
        let mut last = name("shifted");
        if self.channels == Channels::Bgr {
            graph.initializer.push(pb::TensorProto {
                name: name("bgr"),
                dims: vec![3],
                data_type: 7,
                int64_data: vec![2, 1, 0],
                ..Default::default()
            });
            let attr = pb::AttributeProto { name: "axis".into(), r#type: 2, i: 1, ..Default::default() };
            nodes.push(node("Gather", vec![last, name("bgr")], name("ordered"), vec![attr]));
            last = name("ordered");
        }
        if self.layout == Layout::Nhwc {
            let attr = pb::AttributeProto { name: "perm".into(), r#type: 7, ints: vec![0, 2, 3, 1], ..Default::default() };
            nodes.push(node("Transpose", vec![last], name("nhwc"), vec![attr]));
        }
        // the last node writes the model's own input tensor; every consumer stays as it was
        nodes.last_mut().unwrap().output = vec![input.name.clone()];
        let mut declared = input.clone();
        declared.name = pixels.clone();
        if let Some(pb::type_proto::Value::TensorType(t)) = declared.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            if let Some(shape) = t.shape.as_mut() {
                if self.layout == Layout::Nhwc {
                    let d = std::mem::take(&mut shape.dim);
                    shape.dim = vec![d[0].clone(), d[3].clone(), d[1].clone(), d[2].clone()];
                }
            }
        }
        let at = graph.input.iter().position(|i| i.name == input.name).unwrap();
        graph.input[at] = declared;
        nodes.append(&mut graph.node);
        graph.node = nodes;
        Ok(())
    }
}

/// The file's declared input shape, a symbolic or missing dimension as 0 (empty: no graph).
pub fn declared_shape(proto: &pb::ModelProto) -> Vec<usize> {
    let Some(input) = proto.graph.as_ref().and_then(|g| real_input(g).ok()) else { return vec![] };
    declared_dims(input).into_iter().map(|d| d.filter(|&v| v > 0).unwrap_or(0) as usize).collect()
}

/// The first graph input that is not an initializer (IR 3 lists weights as inputs too).
fn real_input(graph: &pb::GraphProto) -> Result<&pb::ValueInfoProto> {
    graph
        .input
        .iter()
        .find(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .ok_or_else(|| Error::Model("the graph has no input".into()))
}

/// The input's declared dimensions (None where symbolic or missing).
fn declared_dims(input: &pb::ValueInfoProto) -> Vec<Option<i64>> {
    let Some(pb::type_proto::Value::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return vec![];
    };
    t.shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(Dim::DimValue(v)) => Some(*v),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_writes() {
        for q in ["layout=nhwc&channels=bgr&range=0-255&mean=104,117,123&std=1", "range=imagenet", "channels=grey"] {
            let p = Preprocessing::parse(q).unwrap();
            assert_eq!(Preprocessing::parse(&p.to_query()).unwrap(), p, "{q}");
        }
        assert!(Preprocessing::parse("").unwrap().is_identity());
        assert!(!Preprocessing::parse("range=imagenet").unwrap().is_identity());
        let e = Preprocessing::parse("layout=hwc").unwrap_err().to_string();
        assert!(e.contains("nchw or nhwc"), "{e}");
        assert!(Preprocessing::parse("std=0").is_err());
        assert!(Preprocessing::parse("colour=rgb").unwrap_err().to_string().contains("unknown preprocessing setting"));
    }

    #[test]
    fn affine_constants() {
        let p = Preprocessing::parse("range=imagenet").unwrap();
        let (scale, shift) = p.affine(3).unwrap();
        // (p - 0.485) / 0.229 for red
        assert!((scale[0] - 1.0 / 0.229).abs() < 1e-6 && (shift[0] + 0.485 / 0.229).abs() < 1e-6);
        let p = Preprocessing::parse("range=-1-1").unwrap();
        assert_eq!(p.affine(1).unwrap(), (vec![2.0], vec![-1.0]));
        let p = Preprocessing::parse("range=0-255&mean=104,117,123").unwrap();
        assert_eq!(p.affine(3).unwrap().1, vec![-104.0, -117.0, -123.0]);
        assert!(Preprocessing::parse("mean=1,2").unwrap().affine(3).is_err());
    }
}
