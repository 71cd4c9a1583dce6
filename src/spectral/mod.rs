//! Spectral bounds (the paper's section 4.3): every linear layer's operator norm, by power iteration
//! and, for convolutions, by the Fourier formula; the per-layer Lipschitz bounds and their product.

mod fourier;
mod power;
mod table;

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::einsum::EinSum;

pub use fourier::{fourier_norm, fourier_norm_on_grid, ConvKernel};
pub use power::{power_iteration, LayerOperator, PowerIteration, CAP, TOLERANCE};
pub use table::{lipschitz, lipschitz_graph, Row, Table};

/// A linear layer of a decluttered graph: the node, what it computes, its input and output shapes.
#[derive(Debug, Clone)]
pub struct Layer {
    pub id: usize,
    pub node: String,
    pub kind: Kind,
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
}

/// The two families of linear layer tract leaves after decluttering.
#[derive(Debug, Clone)]
pub enum Kind {
    /// EinSum with one constant operand: ONNX MatMul and Gemm (and 1x1 convolutions, which tract
    /// rewrites as EinSum); `expr` is tract's axes expression, `weights` the constant's shape.
    Dense { expr: String, weights: Vec<usize> },
    /// A convolution with a constant OIHW kernel. `kernel` is None when it is not two-dimensional
    /// (the Fourier formula is then not evaluated).
    Conv {
        kernel: Option<ConvKernel>,
        kernel_shape: Vec<usize>,
        strides: Vec<usize>,
        dilations: Vec<usize>,
        /// Padding actually applied for this input, (before, after) per spatial axis.
        padding: Vec<(usize, usize)>,
        group: usize,
    },
}

impl Layer {
    /// The layer's shape in the paper's words: "3x3x1x16, stride 1, pad 1" or "1568 -> 128".
    pub fn describe(&self) -> String {
        let len = |s: &[usize]| s.iter().product::<usize>();
        match &self.kind {
            Kind::Dense { .. } => format!("{} → {}", len(&self.input_shape), len(&self.output_shape)),
            Kind::Conv { kernel_shape, strides, dilations, padding, group, .. } => {
                let spatial: Vec<String> = kernel_shape[2..].iter().map(|d| d.to_string()).collect();
                let mut s = format!("{}x{}x{}", spatial.join("x"), kernel_shape[1], kernel_shape[0]);
                s += &format!(", stride {}", same_or_list(strides));
                let pads: Vec<usize> = padding.iter().flat_map(|&(b, a)| [b, a]).collect();
                if pads.iter().all(|&p| p == pads[0]) {
                    s += &format!(", pad {}", pads[0]);
                } else {
                    let before: Vec<String> = padding.iter().map(|p| p.0.to_string()).collect();
                    let after: Vec<String> = padding.iter().map(|p| p.1.to_string()).collect();
                    s += &format!(", pad {} before, {} after", before.join("x"), after.join("x"));
                }
                if dilations.iter().any(|&d| d != 1) {
                    s += &format!(", dilation {}", same_or_list(dilations));
                }
                if *group != 1 {
                    s += &format!(", {group} groups");
                }
                s
            }
        }
    }

    /// The op as a reader knows it.
    pub fn op(&self) -> String {
        match &self.kind {
            Kind::Dense { .. } => "MatMul/Gemm".into(),
            Kind::Conv { .. } => "Conv".into(),
        }
    }

    /// True for convolutions with a stride above 1 (their Fourier value is the stride-1 bound).
    pub fn strided(&self) -> bool {
        matches!(&self.kind, Kind::Conv { strides, .. } if strides.iter().any(|&s| s > 1))
    }
}

fn same_or_list(v: &[usize]) -> String {
    if v.iter().all(|&x| x == v[0]) {
        v[0].to_string()
    } else {
        v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x")
    }
}

fn concrete(model: &TypedModel, outlet: OutletId) -> Option<Vec<usize>> {
    model.outlet_fact(outlet).ok()?.shape.as_concrete().map(|s| s.to_vec())
}

fn is_const(model: &TypedModel, outlet: OutletId) -> bool {
    model.outlet_fact(outlet).map(|f| f.konst.is_some()).unwrap_or(false)
}

/// The node `id` as a linear layer of its one non-constant input, if it is one: an EinSum of two
/// operands one of which is constant, or a float convolution whose kernel and bias are constants.
pub fn linear_layer(model: &TypedModel, id: usize) -> Option<Layer> {
    let node = model.node(id);
    let output_shape = concrete(model, OutletId::new(id, 0))?;
    if model.outlet_fact(OutletId::new(id, 0)).ok()?.datum_type != f32::datum_type() {
        return None;
    }
    if let Some(einsum) = node.op_as::<EinSum>() {
        let konst: Vec<bool> = node.inputs.iter().map(|&i| is_const(model, i)).collect();
        if einsum.q_params.is_some() || node.inputs.len() != 2 || konst.iter().filter(|&&k| k).count() != 1 {
            return None;
        }
        let (data, weights) = if konst[0] { (node.inputs[1], node.inputs[0]) } else { (node.inputs[0], node.inputs[1]) };
        return Some(Layer {
            id,
            node: node.name.clone(),
            kind: Kind::Dense { expr: einsum.axes.to_string(), weights: concrete(model, weights)? },
            input_shape: concrete(model, data)?,
            output_shape,
        });
    }
    let conv = node.op_as::<Conv>()?;
    if conv.q_params.is_some() || conv.kernel_fmt != KernelFormat::OIHW || !node.inputs[1..].iter().all(|&i| is_const(model, i)) {
        return None;
    }
    let input_shape = concrete(model, node.inputs[0])?;
    let spec = &conv.pool_spec;
    let geo = spec.data_format.shape(input_shape.clone()).ok()?;
    let padding: Vec<(usize, usize)> =
        spec.computed_padding(geo.hw_dims()).iter().map(|p| (p.pad_before, p.pad_after)).collect();
    let weights = model.outlet_fact(node.inputs[1]).ok()?.konst.clone()?;
    let kernel_shape = weights.shape().to_vec();
    let values: Vec<f64> = weights.cast_to::<f64>().ok()?.to_plain_array_view::<f64>().ok()?.iter().copied().collect();
    let dilations = spec.dilations().to_vec();
    let kernel = match kernel_shape.len() {
        4 => Some(ConvKernel::new(values, [kernel_shape[0], kernel_shape[1], kernel_shape[2], kernel_shape[3]], conv.group, [dilations[0], dilations[1]])),
        3 => Some(ConvKernel::new(values, [kernel_shape[0], kernel_shape[1], 1, kernel_shape[2]], conv.group, [1, dilations[0]])),
        _ => None,
    };
    Some(Layer {
        id,
        node: node.name.clone(),
        kind: Kind::Conv {
            kernel,
            kernel_shape,
            strides: spec.strides().to_vec(),
            dilations,
            padding,
            group: conv.group,
        },
        input_shape,
        output_shape,
    })
}
