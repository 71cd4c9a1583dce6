//! Compiles a TypedModel into a Plan: constants to upload once, a work memory laid out by tensor
//! lifetimes, and steps (a kernel with static shapes, strides and axes) in evaluation order.

use std::collections::HashMap;

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{MultiBroadcastTo, Pad, PadMode, Slice, TypedConcat};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::{Conv, Deconv, KernelFormat, MaxPool, PoolSpec, SumPool};
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};
use tract_onnx::tract_core::ops::source::TypedSource;

use crate::error::{chain, Error, Result};
use crate::grad::ops::{MaxPoolBackward, ReluBackward};

/// The most axes a map, reduction or einsum output may have.
pub const MAX_RANK: usize = 6;
/// The most summed axes an einsum may have.
pub const MAX_SUM_RANK: usize = 4;

/// Where a view's values live: the constants (uploaded once) or the work memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    Weights,
    Work,
}

/// A strided window onto f32 values: element `i` (a multi-index) is at `offset + sum(i_d s_d)`.
/// Booleans are stored as 0.0 / 1.0.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub space: Space,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
    /// Which work allocation the offset is relative to while planning.
    alloc: usize,
}

impl View {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the values lie row-major and back to back (size-1 axes may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1isize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d as isize;
        }
        true
    }

    /// The same values seen with `shape` (right-aligned numpy broadcasting: stride 0 where a
    /// dimension of 1 grows).
    fn broadcast_to(&self, shape: &[usize]) -> TractResult<View> {
        ensure!(shape.len() >= self.shape.len(), "cannot broadcast {:?} to {:?}", self.shape, shape);
        let extra = shape.len() - self.shape.len();
        let mut strides = vec![0; extra];
        for (i, (&d, &s)) in self.shape.iter().zip(&self.strides).enumerate() {
            let want = shape[extra + i];
            ensure!(d == want || d == 1, "cannot broadcast {:?} to {:?}", self.shape, shape);
            strides.push(if d == want { s } else { 0 });
        }
        Ok(View { shape: shape.to_vec(), strides, ..self.clone() })
    }

    fn axis_view(&self, axis: usize, start: usize, len: usize, step: usize) -> View {
        let mut v = self.clone();
        v.offset = (v.offset as isize + start as isize * v.strides[axis]) as usize;
        v.shape[axis] = len;
        v.strides[axis] *= step as isize;
        v
    }
}

fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![0; shape.len()];
    let mut s = 1isize;
    for (d, st) in shape.iter().zip(strides.iter_mut()).rev() {
        *st = s;
        s *= *d as isize;
    }
    strides
}

/// Element-wise functions of one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    Copy,
    /// Ignores its input: every element gets the value.
    Fill(f32),
    Neg,
    Abs,
    Sign,
    Exp,
    Ln,
    Sqrt,
    Rsqrt,
    Recip,
    Square,
    Sigmoid,
    Tanh,
    Erf,
    Sin,
    Cos,
    PowConst(f32),
    LeakyRelu(f32),
}

/// Element-wise functions of two values; comparisons give 1.0 or 0.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    /// b where a > 0, else 0 (the ReLU gate: a = y, b = dy).
    ReluGate,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MapOp {
    Unary(Unary),
    Binary(Binary),
}

/// Reductions over some axes, kept as size 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    Sum,
    Max,
    Min,
    Prod,
    MeanOfSquares,
}

/// The window of a 2-D convolution or pool (1-D ones get a height of 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub pad_before: [usize; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// Sum over the window's valid positions, divided by the count when `normalize`.
    Sum { normalize: bool, count_include_pad: bool },
}

/// One kernel launch. Every output is written once per element it covers; NCHW operands are
/// views with axes [N, C, H, W] whatever the data format, strides doing the rest.
#[derive(Debug, Clone, PartialEq)]
pub enum Kernel {
    /// out = op(a, b) element by element; a and b are views broadcast to out's shape.
    Map { op: MapOp, out: View, a: Option<View>, b: Option<View> },
    /// out (contiguous, the input's shape with `axes` set to 1) = reduction of `input` over `axes`.
    Reduce { op: Reduction, out: View, input: View, axes: Vec<usize> },
    /// out = sum over the summed axes of a * b (b absent: of a). a and b carry strides along the
    /// output's axes (0 where absent) and `sum_strides` along the summed axes `sum_shape`.
    EinSum { out: View, a: View, b: Option<View>, sum_shape: Vec<usize>, sum_strides: [Vec<isize>; 2] },
    /// out[n,o,y,x] = bias[o] + sum x[n, g ci + i, y s - p + ky d, ..] kernel[o, i, ky, kx].
    Conv { out: View, x: View, kernel: View, bias: View, window: Window, group: usize },
    /// The transposed convolution: out[n,o,y s - p + ky d, ..] += x[n, g ci + i, y, ..] kernel[o, i, ky, kx].
    Deconv { out: View, x: View, kernel: View, bias: View, window: Window, group: usize },
    Pool { kind: PoolKind, out: View, x: View, window: Window },
    /// out (x's shape) = each window's dy added at the window's first maximum of x.
    MaxPoolBackward { out: View, x: View, dy: View, window: Window },
}

impl Kernel {
    pub fn output(&self) -> &View {
        match self {
            Kernel::Map { out, .. }
            | Kernel::Reduce { out, .. }
            | Kernel::EinSum { out, .. }
            | Kernel::Conv { out, .. }
            | Kernel::Deconv { out, .. }
            | Kernel::Pool { out, .. }
            | Kernel::MaxPoolBackward { out, .. } => out,
        }
    }

    pub fn inputs(&self) -> Vec<&View> {
        match self {
            Kernel::Map { a, b, .. } => a.iter().chain(b.iter()).collect(),
            Kernel::Reduce { input, .. } => vec![input],
            Kernel::EinSum { a, b, .. } => std::iter::once(a).chain(b.iter()).collect(),
            Kernel::Conv { x, kernel, bias, .. } | Kernel::Deconv { x, kernel, bias, .. } => vec![x, kernel, bias],
            Kernel::Pool { x, .. } => vec![x],
            Kernel::MaxPoolBackward { x, dy, .. } => vec![x, dy],
        }
    }

    fn views_mut(&mut self) -> Vec<&mut View> {
        match self {
            Kernel::Map { out, a, b, .. } => std::iter::once(out).chain(a.iter_mut()).chain(b.iter_mut()).collect(),
            Kernel::Reduce { out, input, .. } => vec![out, input],
            Kernel::EinSum { out, a, b, .. } => [out, a].into_iter().chain(b.iter_mut()).collect(),
            Kernel::Conv { out, x, kernel, bias, .. } | Kernel::Deconv { out, x, kernel, bias, .. } => {
                vec![out, x, kernel, bias]
            }
            Kernel::Pool { out, x, .. } => vec![out, x],
            Kernel::MaxPoolBackward { out, x, dy, .. } => vec![out, x, dy],
        }
    }

    /// How many threads the kernel runs: one per output element it writes.
    pub fn threads(&self) -> usize {
        self.output().len()
    }
}

/// One dispatch and the node it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub node: String,
    pub kernel: Kernel,
}

/// A model compiled for the WebGPU backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Every constant, back to back: uploaded once.
    pub weights: Vec<f32>,
    /// Values of work memory: inputs, outputs and intermediates, reused once dead.
    pub work_len: usize,
    pub steps: Vec<Step>,
    /// Contiguous views the model's inputs are written to, in the model's input order.
    pub inputs: Vec<View>,
    /// Contiguous work views the model's outputs are read from, in its output order.
    pub outputs: Vec<View>,
    /// How many values the intermediates would take without reuse (for the record).
    pub work_without_reuse: usize,
}

/// The refusal that lets a caller fall back to the CPU.
fn no_kernel(node: &TypedNode, why: Option<String>) -> Error {
    let mut msg = format!("the WebGPU backend has no kernel for {} (node \"{}\")", node.op.name(), node.name);
    if let Some(why) = why {
        msg.push_str(&format!(": {why}"));
    }
    Error::Model(msg)
}

struct Alloc {
    len: usize,
    first: usize,
    last: usize,
    pinned: bool,
    offset: usize,
}

/// The planner's state: values per outlet, the allocations and steps so far.
struct Planner {
    weights: Vec<f32>,
    allocs: Vec<Alloc>,
    steps: Vec<Step>,
    values: HashMap<OutletId, View>,
    node: String,
}

impl Planner {
    fn alloc(&mut self, shape: &[usize]) -> View {
        let len: usize = shape.iter().product();
        self.allocs.push(Alloc { len, first: usize::MAX, last: 0, pinned: false, offset: 0 });
        View { space: Space::Work, offset: 0, shape: shape.to_vec(), strides: contiguous_strides(shape), alloc: self.allocs.len() - 1 }
    }

    fn constant(&mut self, t: &Tensor) -> TractResult<View> {
        let t = t.cast_to::<f32>()?;
        let values = t.to_plain_array_view::<f32>()?;
        let offset = self.weights.len();
        self.weights.extend(values.iter().copied());
        // keep every constant 16-byte aligned
        while !self.weights.len().is_multiple_of(4) {
            self.weights.push(0.0);
        }
        Ok(View { space: Space::Weights, offset, shape: t.shape().to_vec(), strides: contiguous_strides(t.shape()), alloc: 0 })
    }

    fn push(&mut self, kernel: Kernel) {
        self.steps.push(Step { node: self.node.clone(), kernel });
    }

    fn map(&mut self, op: MapOp, a: Option<&View>, b: Option<&View>, shape: &[usize]) -> TractResult<View> {
        let out = self.alloc(shape);
        let a = a.map(|v| v.broadcast_to(shape)).transpose()?;
        let b = b.map(|v| v.broadcast_to(shape)).transpose()?;
        self.push(Kernel::Map { op, out: out.clone(), a, b });
        Ok(out)
    }

    fn copy_into(&mut self, out: &View, a: &View) {
        self.push(Kernel::Map { op: MapOp::Unary(Unary::Copy), out: out.clone(), a: Some(a.clone()), b: None });
    }

    fn contiguous(&mut self, v: &View) -> View {
        if v.space == Space::Work && v.is_contiguous() {
            return v.clone();
        }
        let out = self.alloc(&v.shape);
        self.copy_into(&out, v);
        out
    }

    fn reduce(&mut self, op: Reduction, input: &View, axes: &[usize]) -> View {
        let mut shape = input.shape.clone();
        for &a in axes {
            shape[a] = 1;
        }
        let out = self.alloc(&shape);
        self.push(Kernel::Reduce { op, out: out.clone(), input: input.clone(), axes: axes.to_vec() });
        out
    }
}

/// Compiles `model` (concrete shapes, f32 values) into a [`Plan`], or names the first node the
/// backend has no kernel for.
pub fn compile(model: &TypedModel) -> Result<Plan> {
    let model_err = |e: TractError| Error::Model(chain(&e));
    let mut p = Planner { weights: vec![], allocs: vec![], steps: vec![], values: HashMap::new(), node: String::new() };
    let inputs = model.input_outlets().map_err(model_err)?.to_vec();
    let outputs = model.output_outlets().map_err(model_err)?.to_vec();
    for &n in &model.eval_order().map_err(model_err)? {
        let node = model.node(n);
        p.node = node.name.clone();
        let facts: Vec<TypedFact> = node.outputs.iter().map(|o| o.fact.clone()).collect();
        let shape: Vec<usize> = match facts[0].shape.as_concrete() {
            Some(s) => s.to_vec(),
            None => return Err(no_kernel(node, Some(format!("the shape {:?} is not fixed", facts[0].shape)))),
        };
        if node.op_is::<TypedSource>() {
            let dt = facts[0].datum_type;
            if dt != f32::datum_type() {
                return Err(no_kernel(node, Some(format!("the input is {dt:?}, not f32"))));
            }
            let v = p.alloc(&shape);
            p.allocs[v.alloc].pinned = true;
            p.values.insert(OutletId::new(n, 0), v);
            continue;
        }
        if let Some(k) = facts[0].konst.clone().or_else(|| node.op_as::<Const>().map(|c| c.val().clone())) {
            if facts.len() == 1 {
                let v = p.constant(&k).map_err(|e| no_kernel(node, Some(chain(&e))))?;
                p.values.insert(OutletId::new(n, 0), v);
                continue;
            }
        }
        if facts.len() != 1 {
            return Err(no_kernel(node, Some("several outputs".into())));
        }
        let ins: Vec<View> = node.inputs.iter().map(|i| p.values[i].clone()).collect();
        let v = wire(&mut p, node, &ins, &shape).map_err(|e| match e.downcast::<Error>() {
            Ok(e) => e,
            Err(e) => no_kernel(node, Some(chain(&e))),
        })?;
        debug_assert_eq!(v.shape, shape, "node {}", node.name);
        p.values.insert(OutletId::new(n, 0), v);
    }
    let mut plan_inputs = vec![];
    for o in &inputs {
        // an input nothing reads still takes its values
        let v = match p.values.get(o) {
            Some(v) => v.clone(),
            None => {
                let shape = model.outlet_fact(*o).map_err(model_err)?.shape.as_concrete().map(|s| s.to_vec()).unwrap_or_default();
                let v = p.alloc(&shape);
                p.allocs[v.alloc].pinned = true;
                v
            }
        };
        plan_inputs.push(v);
    }
    let mut plan_outputs = vec![];
    for o in &outputs {
        p.node = format!("output {}", model.node(o.node).name);
        let v = p.values[o].clone();
        let v = p.contiguous(&v);
        p.allocs[v.alloc].pinned = true;
        plan_outputs.push(v);
    }
    Ok(lay_out(p, plan_inputs, plan_outputs))
}

/// Gives every allocation an offset: allocations alive at the same step never overlap; inputs
/// and outputs are never reused.
fn lay_out(mut p: Planner, mut inputs: Vec<View>, mut outputs: Vec<View>) -> Plan {
    let end = p.steps.len();
    for (i, step) in p.steps.iter().enumerate() {
        let out = step.kernel.output();
        let a = &mut p.allocs[out.alloc];
        a.first = a.first.min(i);
        a.last = a.last.max(i);
        for v in step.kernel.inputs() {
            if v.space == Space::Work {
                p.allocs[v.alloc].last = p.allocs[v.alloc].last.max(i);
            }
        }
    }
    for a in p.allocs.iter_mut() {
        if a.pinned {
            a.first = 0;
            a.last = end;
        }
        if a.first == usize::MAX {
            // never written (an input read by nothing)
            a.first = 0;
        }
    }
    // greedy: biggest first, lowest offset that overlaps nothing alive at the same time
    let mut order: Vec<usize> = (0..p.allocs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(p.allocs[i].len));
    let mut placed: Vec<usize> = vec![];
    let mut work_len = 0;
    for i in order {
        let (first, last, len) = (p.allocs[i].first, p.allocs[i].last, p.allocs[i].len.div_ceil(4) * 4);
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .map(|&j| &p.allocs[j])
            .filter(|b| b.first <= last && first <= b.last)
            .map(|b| (b.offset, b.offset + b.len.div_ceil(4) * 4))
            .collect();
        busy.sort();
        let mut offset = 0;
        for (start, stop) in busy {
            if offset + len <= start {
                break;
            }
            offset = offset.max(stop);
        }
        p.allocs[i].offset = offset;
        work_len = work_len.max(offset + len);
        placed.push(i);
    }
    let work_without_reuse = p.allocs.iter().map(|a| a.len.div_ceil(4) * 4).sum();
    let resolve = |v: &mut View, allocs: &[Alloc]| {
        if v.space == Space::Work {
            v.offset += allocs[v.alloc].offset;
        }
    };
    for step in p.steps.iter_mut() {
        for v in step.kernel.views_mut() {
            resolve(v, &p.allocs);
        }
    }
    for v in inputs.iter_mut().chain(outputs.iter_mut()) {
        resolve(v, &p.allocs);
    }
    Plan { weights: p.weights, work_len: work_len.max(4), steps: p.steps, inputs, outputs, work_without_reuse }
}

fn unary_of(name: &str, op: &ElementWiseOp) -> Option<Unary> {
    use tract_onnx::tract_core::ops::{math, nn};
    Some(match name {
        "Neg" => Unary::Neg,
        "Abs" => Unary::Abs,
        "Sign" => Unary::Sign,
        "Exp" => Unary::Exp,
        "Ln" => Unary::Ln,
        "Sqrt" => Unary::Sqrt,
        "Rsqrt" => Unary::Rsqrt,
        "Recip" => Unary::Recip,
        "Square" => Unary::Square,
        "Sigmoid" => Unary::Sigmoid,
        "Tanh" => Unary::Tanh,
        "Erf" => Unary::Erf,
        "Sin" => Unary::Sin,
        "Cos" => Unary::Cos,
        "PowConst" => Unary::PowConst(op.0.downcast_ref::<math::PowConst>()?.exponent),
        "LeakyRelu" => Unary::LeakyRelu(op.0.downcast_ref::<nn::LeakyRelu>()?.alpha),
        _ => return None,
    })
}

fn binary_of(name: &str) -> Option<Binary> {
    Some(match name {
        "Add" => Binary::Add,
        "Sub" => Binary::Sub,
        "Mul" => Binary::Mul,
        "Div" => Binary::Div,
        "Max" => Binary::Max,
        "Min" => Binary::Min,
        "Pow" => Binary::Pow,
        "Eq" => Binary::Eq,
        "NE" => Binary::Ne,
        "LT" => Binary::Lt,
        "GT" => Binary::Gt,
        "LTE" => Binary::Le,
        "GTE" => Binary::Ge,
        _ => return None,
    })
}

fn refuse(node: &TypedNode, why: Option<String>) -> TractError {
    TractError::from(no_kernel(node, why))
}

/// The steps of one node; returns the view its output is read from.
fn wire(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> TractResult<View> {
    let op = &node.op;
    if let Some(axis_op) = op.downcast_ref::<AxisOp>() {
        return axis(p, axis_op, &ins[0], shape);
    }
    if let Some(slice) = op.downcast_ref::<Slice>() {
        let (start, end) = (slice.start.to_usize()?, slice.end.to_usize()?);
        return Ok(ins[0].axis_view(slice.axis, start, end - start, 1));
    }
    if let Some(down) = op.downcast_ref::<Downsample>() {
        ensure!(down.stride > 0, "negative stride");
        return Ok(ins[0].axis_view(down.axis, down.modulo, shape[down.axis], down.stride as usize));
    }
    if op.downcast_ref::<MultiBroadcastTo>().is_some() {
        return ins[0].broadcast_to(shape);
    }
    if let Some(cast) = op.downcast_ref::<Cast>() {
        if cast.to == f32::datum_type() || cast.to == bool::datum_type() {
            return Ok(ins[0].clone());
        }
        return Err(refuse(node, Some(format!("a cast to {:?}", cast.to))));
    }
    if let Some(concat) = op.downcast_ref::<TypedConcat>() {
        let out = p.alloc(shape);
        let mut start = 0;
        for v in ins {
            let len = v.shape[concat.axis];
            let region = out.axis_view(concat.axis, start, len, 1);
            p.copy_into(&region, v);
            start += len;
        }
        return Ok(out);
    }
    if let Some(pad) = op.downcast_ref::<Pad>() {
        let PadMode::Constant(value) = &pad.mode else { return Err(refuse(node, Some("a non-constant pad".into()))) };
        let value = value.cast_to_scalar::<f32>()?;
        let out = p.alloc(shape);
        p.push(Kernel::Map { op: MapOp::Unary(Unary::Fill(value)), out: out.clone(), a: None, b: None });
        let mut inner = out.clone();
        for (axis, (before, _)) in pad.pads.iter().enumerate() {
            inner = inner.axis_view(axis, *before, ins[0].shape[axis], 1);
        }
        p.copy_into(&inner, &ins[0]);
        return Ok(out);
    }
    if let Some(bin) = op.downcast_ref::<TypedBinOp>() {
        let b = binary_of(bin.0.name()).ok_or_else(|| refuse(node, None))?;
        return p.map(MapOp::Binary(b), Some(&ins[0]), Some(&ins[1]), shape);
    }
    if op.downcast_ref::<ReluBackward>().is_some() {
        return p.map(MapOp::Binary(Binary::ReluGate), Some(&ins[0]), Some(&ins[1]), shape);
    }
    if let Some(ew) = op.downcast_ref::<ElementWiseOp>() {
        let u = unary_of(ew.0.name().as_ref(), ew).ok_or_else(|| refuse(node, None))?;
        if ew.1.is_some_and(|dt| dt != f32::datum_type()) {
            return Err(refuse(node, Some("a non-f32 output".into())));
        }
        return p.map(MapOp::Unary(u), Some(&ins[0]), None, shape);
    }
    if let Some(reduce) = op.downcast_ref::<Reduce>() {
        let r = match reduce.reducer {
            Reducer::Sum => Reduction::Sum,
            Reducer::Max => Reduction::Max,
            Reducer::Min => Reduction::Min,
            Reducer::Prod => Reduction::Prod,
            Reducer::MeanOfSquares => Reduction::MeanOfSquares,
            _ => return Err(refuse(node, None)),
        };
        return Ok(p.reduce(r, &ins[0], &reduce.axes));
    }
    if let Some(softmax) = op.downcast_ref::<Softmax>() {
        ensure!(softmax.quant_output_dt.is_none(), "quantized softmax");
        let m = p.reduce(Reduction::Max, &ins[0], &softmax.axes);
        let shifted = p.map(MapOp::Binary(Binary::Sub), Some(&ins[0]), Some(&m), shape)?;
        let e = p.map(MapOp::Unary(Unary::Exp), Some(&shifted), None, shape)?;
        let s = p.reduce(Reduction::Sum, &e, &softmax.axes);
        return match softmax.kind {
            SoftmaxKind::Softmax => p.map(MapOp::Binary(Binary::Div), Some(&e), Some(&s), shape),
            SoftmaxKind::LogSoftmax => {
                let log_s = p.map(MapOp::Unary(Unary::Ln), Some(&s), None, &s.shape.clone())?;
                p.map(MapOp::Binary(Binary::Sub), Some(&shifted), Some(&log_s), shape)
            }
        };
    }
    if let Some(einsum) = op.downcast_ref::<EinSum>() {
        ensure!(einsum.q_params.is_none(), "quantized einsum");
        return einsum_steps(p, node, einsum, ins, shape);
    }
    if let Some(conv) = op.downcast_ref::<Conv>() {
        ensure!(conv.q_params.is_none(), "quantized convolution");
        return conv_steps(p, &conv.pool_spec, &conv.kernel_fmt, conv.group, ins, shape, false);
    }
    if let Some(deconv) = op.downcast_ref::<Deconv>() {
        return conv_steps(p, &deconv.pool_spec, &deconv.kernel_format, deconv.group, ins, shape, true);
    }
    if let Some(pool) = op.downcast_ref::<MaxPool>() {
        ensure!(pool.with_index_outputs.is_none(), "max pool with indices");
        return pool_steps(p, &pool.pool_spec, PoolKind::Max, &ins[0], shape);
    }
    if let Some(pool) = op.downcast_ref::<SumPool>() {
        let kind = PoolKind::Sum { normalize: pool.normalize, count_include_pad: pool.count_include_pad };
        return pool_steps(p, &pool.pool_spec, kind, &ins[0], shape);
    }
    if let Some(back) = op.downcast_ref::<MaxPoolBackward>() {
        let (x, window) = nchw(&back.pool_spec, &ins[0])?;
        let (dy, _) = nchw(&back.pool_spec, &ins[1])?;
        let out = p.alloc(shape);
        let (out_nchw, _) = nchw(&back.pool_spec, &out)?;
        p.push(Kernel::MaxPoolBackward { out: out_nchw, x, dy, window });
        return Ok(out);
    }
    Err(refuse(node, None))
}

fn axis(p: &mut Planner, op: &AxisOp, v: &View, shape: &[usize]) -> TractResult<View> {
    let mut v = v.clone();
    match op {
        AxisOp::Add(a) => {
            v.shape.insert(*a, 1);
            v.strides.insert(*a, 0);
        }
        AxisOp::Rm(a) => {
            ensure!(v.shape[*a] == 1, "removing an axis of size {}", v.shape[*a]);
            v.shape.remove(*a);
            v.strides.remove(*a);
        }
        AxisOp::Move(from, to) => {
            let (d, s) = (v.shape.remove(*from), v.strides.remove(*from));
            v.shape.insert(*to, d);
            v.strides.insert(*to, s);
        }
        AxisOp::Reshape(at, from, _) => {
            let range = *at..*at + from.len();
            // the axes being merged must lie back to back in memory (size-1 axes do anywhere)
            let kept: Vec<usize> = range.clone().filter(|&i| v.shape[i] != 1).collect();
            let mergeable = kept.windows(2).all(|w| v.strides[w[0]] == v.strides[w[1]] * v.shape[w[1]] as isize);
            if !mergeable {
                v = p.contiguous(&v);
            }
            let inner = kept.last().map(|&i| v.strides[i]).unwrap_or(1);
            let new_len = shape.len() - (v.shape.len() - from.len());
            let new_dims = &shape[*at..*at + new_len];
            let mut strides = vec![0isize; new_len];
            let mut s = inner;
            for (i, &d) in new_dims.iter().enumerate().rev() {
                strides[i] = s;
                s *= d as isize;
            }
            v.shape.splice(range.clone(), new_dims.iter().copied());
            v.strides.splice(range, strides);
        }
    }
    ensure!(v.shape == shape, "{op:?} gave {:?}, expected {shape:?}", v.shape);
    Ok(v)
}

fn einsum_steps(p: &mut Planner, node: &TypedNode, op: &EinSum, ins: &[View], shape: &[usize]) -> TractResult<View> {
    let (inputs, outputs) = op.axes.to_strs();
    if ins.len() > 2 || ins.is_empty() {
        return Err(refuse(node, Some(format!("{} operands", ins.len()))));
    }
    let out_axes: Vec<char> = outputs[0].chars().collect();
    let operands: Vec<Vec<char>> = inputs.iter().map(|s| s.chars().collect()).collect();
    for axes in operands.iter().chain(std::iter::once(&out_axes)) {
        let mut sorted = axes.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != axes.len() {
            return Err(refuse(node, Some("a repeated axis (a diagonal)".into())));
        }
    }
    if shape.len() > MAX_RANK {
        return Err(refuse(node, Some(format!("rank {} over {MAX_RANK}", shape.len()))));
    }
    let mut summed: Vec<char> = vec![];
    for axes in &operands {
        for &c in axes {
            if !out_axes.contains(&c) && !summed.contains(&c) {
                summed.push(c);
            }
        }
    }
    if summed.len() > MAX_SUM_RANK {
        return Err(refuse(node, Some(format!("{} summed axes", summed.len()))));
    }
    let size_of = |c: char| -> usize {
        for (axes, v) in operands.iter().zip(ins) {
            if let Some(i) = axes.iter().position(|&a| a == c) {
                return v.shape[i];
            }
        }
        1
    };
    let sum_shape: Vec<usize> = summed.iter().map(|&c| size_of(c)).collect();
    let mut sum_strides: [Vec<isize>; 2] = [vec![0; summed.len()], vec![0; summed.len()]];
    let mut views = vec![];
    for (j, (axes, v)) in operands.iter().zip(ins).enumerate() {
        let stride_of = |c: char| axes.iter().position(|&a| a == c).map(|i| if v.shape[i] == 1 { 0 } else { v.strides[i] }).unwrap_or(0);
        let strides: Vec<isize> = out_axes.iter().map(|&c| stride_of(c)).collect();
        sum_strides[j] = summed.iter().map(|&c| stride_of(c)).collect();
        views.push(View { shape: shape.to_vec(), strides, ..v.clone() });
    }
    let out = p.alloc(shape);
    let b = views.get(1).cloned();
    p.push(Kernel::EinSum { out: out.clone(), a: views[0].clone(), b, sum_shape, sum_strides });
    Ok(out)
}

/// A view with axes [N, C, H, W] of an operand laid out as `spec` says, and the window.
fn nchw(spec: &PoolSpec, v: &View) -> TractResult<(View, Window)> {
    let s = spec.data_format.shape(v.shape.clone())?;
    let hw: Vec<usize> = s.hw_axes().collect();
    ensure!(hw.len() == 1 || hw.len() == 2, "{}-D windows", hw.len());
    let pick = |axis: Option<usize>| axis.map(|a| (v.shape[a], v.strides[a])).unwrap_or((1, 0));
    let dims = [pick(s.n_axis()), pick(Some(s.c_axis())), if hw.len() == 2 { pick(Some(hw[0])) } else { (1, 0) }, pick(hw.last().copied())];
    let view = View { shape: dims.iter().map(|d| d.0).collect(), strides: dims.iter().map(|d| d.1).collect(), ..v.clone() };
    let spatial: Vec<usize> = hw.iter().map(|&a| v.shape[a]).collect();
    let padding = spec.computed_padding(&spatial);
    let lift = |vals: Vec<usize>, fill: usize| if vals.len() == 2 { [vals[0], vals[1]] } else { [fill, vals[0]] };
    let window = Window {
        kernel: lift(spec.kernel_shape.to_vec(), 1),
        strides: lift(spec.strides().to_vec(), 1),
        dilations: lift(spec.dilations().to_vec(), 1),
        pad_before: lift(padding.iter().map(|p| p.pad_before).collect(), 0),
    };
    Ok((view, window))
}

/// The kernel as [O, I/group, KH, KW] strides, whatever its format.
fn oihw(format: &KernelFormat, k: &View) -> TractResult<View> {
    ensure!(*format == KernelFormat::OIHW, "kernel format {format:?}");
    let rank = k.shape.len();
    ensure!(rank == 3 || rank == 4, "a rank-{rank} kernel");
    let mut v = k.clone();
    if rank == 3 {
        v.shape.insert(2, 1);
        v.strides.insert(2, 0);
    }
    Ok(v)
}

fn conv_steps(
    p: &mut Planner,
    spec: &PoolSpec,
    format: &KernelFormat,
    group: usize,
    ins: &[View],
    shape: &[usize],
    transposed: bool,
) -> TractResult<View> {
    let (x, window) = nchw(spec, &ins[0])?;
    let kernel = oihw(format, &ins[1])?;
    let out = p.alloc(shape);
    let (out_nchw, _) = nchw(spec, &out)?;
    let channels = out_nchw.shape[1];
    let bias = match ins.get(2) {
        Some(b) if b.len() == 1 => View { shape: vec![channels], strides: vec![0], ..b.clone() },
        Some(b) if b.len() == channels => {
            let axis = b.shape.iter().position(|&d| d == channels).unwrap_or(0);
            View { shape: vec![channels], strides: vec![b.strides[axis]], ..b.clone() }
        }
        Some(b) => bail!("a bias of shape {:?}", b.shape),
        None => {
            let zero = p.constant(&Tensor::zero_scalar::<f32>()?)?;
            View { shape: vec![channels], strides: vec![0], ..zero }
        }
    };
    p.push(if transposed {
        Kernel::Deconv { out: out_nchw, x, kernel, bias, window, group }
    } else {
        Kernel::Conv { out: out_nchw, x, kernel, bias, window, group }
    });
    Ok(out)
}

fn pool_steps(p: &mut Planner, spec: &PoolSpec, kind: PoolKind, x: &View, shape: &[usize]) -> TractResult<View> {
    let (x, window) = nchw(spec, x)?;
    let out = p.alloc(shape);
    let (out_nchw, _) = nchw(spec, &out)?;
    p.push(Kernel::Pool { kind, out: out_nchw, x, window });
    Ok(out)
}
