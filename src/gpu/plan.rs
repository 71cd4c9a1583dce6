//! Compiles a TypedModel into a Plan: constants to upload once, a work memory laid out by tensor
//! lifetimes, and steps (a kernel with static shapes, strides and axes) in evaluation order.

use std::collections::HashMap;

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::PoolSpec;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::source::TypedSource;

use crate::error::{chain, Error, Result};
use crate::grad::rules;

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
    pub(crate) alloc: usize,
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
    pub(crate) fn broadcast_to(&self, shape: &[usize]) -> TractResult<View> {
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

    /// `len` positions of `axis` from `start`, every `step`-th.
    pub(crate) fn axis_view(&self, axis: usize, start: usize, len: usize, step: usize) -> View {
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

/// The planner's state: values per outlet, the allocations and steps so far. Op families lower
/// their nodes through its methods (`grad::rules`).
pub struct Planner {
    weights: Vec<f32>,
    allocs: Vec<Alloc>,
    steps: Vec<Step>,
    values: HashMap<OutletId, View>,
    node: String,
}

impl Planner {
    pub(crate) fn alloc(&mut self, shape: &[usize]) -> View {
        let len: usize = shape.iter().product();
        self.allocs.push(Alloc { len, first: usize::MAX, last: 0, pinned: false, offset: 0 });
        View { space: Space::Work, offset: 0, shape: shape.to_vec(), strides: contiguous_strides(shape), alloc: self.allocs.len() - 1 }
    }

    pub(crate) fn constant(&mut self, t: &Tensor) -> TractResult<View> {
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

    pub(crate) fn push(&mut self, kernel: Kernel) {
        self.steps.push(Step { node: self.node.clone(), kernel });
    }

    pub(crate) fn map(&mut self, op: MapOp, a: Option<&View>, b: Option<&View>, shape: &[usize]) -> TractResult<View> {
        let out = self.alloc(shape);
        let a = a.map(|v| v.broadcast_to(shape)).transpose()?;
        let b = b.map(|v| v.broadcast_to(shape)).transpose()?;
        self.push(Kernel::Map { op, out: out.clone(), a, b });
        Ok(out)
    }

    pub(crate) fn copy_into(&mut self, out: &View, a: &View) {
        self.push(Kernel::Map { op: MapOp::Unary(Unary::Copy), out: out.clone(), a: Some(a.clone()), b: None });
    }

    pub(crate) fn contiguous(&mut self, v: &View) -> View {
        if v.space == Space::Work && v.is_contiguous() {
            return v.clone();
        }
        let out = self.alloc(&v.shape);
        self.copy_into(&out, v);
        out
    }

    pub(crate) fn reduce(&mut self, op: Reduction, input: &View, axes: &[usize]) -> View {
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

/// The refusal of a node the backend has no kernel for (or one of its variants), with why.
pub(crate) fn refuse(node: &TypedNode, why: Option<String>) -> TractError {
    TractError::from(no_kernel(node, why))
}

/// The steps of one node, as its op family lowers it; returns the view its output is read from.
fn wire(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> TractResult<View> {
    rules::lower(p, node, ins, shape).unwrap_or_else(|| Err(refuse(node, None)))
}

/// A view with axes [N, C, H, W] of an operand laid out as `spec` says, and the window.
pub(crate) fn nchw(spec: &PoolSpec, v: &View) -> TractResult<(View, Window)> {
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
