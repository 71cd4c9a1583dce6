//! A CPU interpreter of a Plan with the WGSL kernels' semantics, one output element at a time:
//! it tests the planner (layout, views, reuse) with no GPU.

use super::plan::{Binary, Kernel, MapOp, Plan, PoolKind, Reduction, Space, Unary, View, Window};

/// The work memory and the constants a plan runs on.
struct Memory<'a> {
    weights: &'a [f32],
    work: Vec<f32>,
}

impl Memory<'_> {
    fn load(&self, v: &View, index: &[usize]) -> f32 {
        self.get(v.space, element(v, index))
    }

    fn get(&self, space: Space, at: usize) -> f32 {
        match space {
            Space::Weights => self.weights[at],
            Space::Work => self.work[at],
        }
    }

    fn store(&mut self, v: &View, index: &[usize], value: f32) {
        debug_assert_eq!(v.space, Space::Work);
        let at = element(v, index);
        self.work[at] = value;
    }
}

fn element(v: &View, index: &[usize]) -> usize {
    let mut at = v.offset as isize;
    for (i, s) in index.iter().zip(&v.strides) {
        at += *i as isize * s;
    }
    at as usize
}

/// Row-major multi-indices of `shape`, as a kernel thread decodes its global id.
fn unravel(mut linear: usize, shape: &[usize], index: &mut [usize]) {
    for (d, i) in shape.iter().zip(index.iter_mut()).rev() {
        *i = linear % d;
        linear /= d;
    }
}

/// Runs `plan` on `inputs` (one slice per plan input); returns the plan's outputs.
pub fn run(plan: &Plan, inputs: &[&[f32]]) -> Vec<Vec<f32>> {
    let mut m = Memory { weights: &plan.weights, work: vec![f32::NAN; plan.work_len] };
    for (v, data) in plan.inputs.iter().zip(inputs) {
        assert_eq!(v.len(), data.len(), "input of shape {:?}", v.shape);
        m.work[v.offset..v.offset + data.len()].copy_from_slice(data);
    }
    for step in &plan.steps {
        execute(&mut m, &step.kernel);
    }
    plan.outputs.iter().map(|v| m.work[v.offset..v.offset + v.len()].to_vec()).collect()
}

fn execute(m: &mut Memory, kernel: &Kernel) {
    let out = kernel.output();
    let mut index = vec![0; out.shape.len()];
    for linear in 0..kernel.threads() {
        unravel(linear, &out.shape, &mut index);
        let value = match kernel {
            Kernel::Map { op, a, b, .. } => {
                let a = a.as_ref().map(|v| m.load(v, &index)).unwrap_or(0.0);
                let b = b.as_ref().map(|v| m.load(v, &index)).unwrap_or(0.0);
                map(*op, a, b)
            }
            Kernel::Reduce { op, input, axes, .. } => reduce(m, *op, input, axes, &index),
            Kernel::EinSum { a, b, sum_shape, sum_strides, .. } => einsum(m, a, b.as_ref(), sum_shape, sum_strides, &index),
            Kernel::Conv { x, kernel, bias, window, group, .. } => conv(m, x, kernel, bias, window, *group, &index, tap),
            Kernel::Deconv { x, kernel, bias, window, group, .. } => conv(m, x, kernel, bias, window, *group, &index, source),
            Kernel::Pool { kind, x, window, .. } => pool(m, *kind, x, window, &index),
            Kernel::MaxPoolBackward { x, dy, window, .. } => max_pool_backward(m, x, dy, window, &index),
        };
        m.store(out, &index, value);
    }
}

/// The element-wise functions, as the WGSL computes them.
pub fn map(op: MapOp, a: f32, b: f32) -> f32 {
    let flag = |c: bool| if c { 1.0 } else { 0.0 };
    match op {
        MapOp::Unary(u) => match u {
            Unary::Copy => a,
            Unary::Fill(v) => v,
            Unary::Neg => -a,
            Unary::Abs => a.abs(),
            Unary::Sign => {
                if a > 0.0 {
                    1.0
                } else if a < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Unary::Exp => a.exp(),
            Unary::Ln => a.ln(),
            Unary::Sqrt => a.sqrt(),
            Unary::Rsqrt => 1.0 / a.sqrt(),
            Unary::Recip => 1.0 / a,
            Unary::Square => a * a,
            Unary::Sigmoid => 1.0 / (1.0 + (-a).exp()),
            Unary::Tanh => a.tanh(),
            Unary::Erf => erf(a),
            Unary::Sin => a.sin(),
            Unary::Cos => a.cos(),
            Unary::PowConst(c) => a.powf(c),
            Unary::LeakyRelu(alpha) => {
                if a > 0.0 {
                    a
                } else {
                    alpha * a
                }
            }
        },
        MapOp::Binary(op) => match op {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::Max => a.max(b),
            Binary::Min => a.min(b),
            Binary::Pow => a.powf(b),
            Binary::Eq => flag(a == b),
            Binary::Ne => flag(a != b),
            Binary::Lt => flag(a < b),
            Binary::Gt => flag(a > b),
            Binary::Le => flag(a <= b),
            Binary::Ge => flag(a >= b),
            Binary::ReluGate => {
                if a > 0.0 {
                    b
                } else {
                    0.0
                }
            }
        },
    }
}

/// Abramowitz and Stegun 7.1.26 (error under 1.5e-7), the form the WGSL uses.
pub fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_7) * t - 0.284_496_74) * t + 0.254_829_6)
            * t
            * (-x * x).exp();
    y.copysign(x)
}

fn reduce(m: &Memory, op: Reduction, input: &View, axes: &[usize], out_index: &[usize]) -> f32 {
    let inner: Vec<usize> = (0..input.shape.len()).map(|d| if axes.contains(&d) { input.shape[d] } else { 1 }).collect();
    let count: usize = inner.iter().product();
    let mut acc = match op {
        Reduction::Sum | Reduction::MeanOfSquares => 0.0,
        Reduction::Prod => 1.0,
        Reduction::Max => f32::NEG_INFINITY,
        Reduction::Min => f32::INFINITY,
    };
    let mut at = out_index.to_vec();
    let mut i = vec![0; inner.len()];
    for linear in 0..count {
        unravel(linear, &inner, &mut i);
        for d in 0..at.len() {
            at[d] = out_index[d] + i[d];
        }
        let v = m.load(input, &at);
        acc = match op {
            Reduction::Sum => acc + v,
            Reduction::MeanOfSquares => acc + v * v,
            Reduction::Prod => acc * v,
            Reduction::Max => acc.max(v),
            Reduction::Min => acc.min(v),
        };
    }
    if op == Reduction::MeanOfSquares {
        acc / count as f32
    } else {
        acc
    }
}

fn einsum(m: &Memory, a: &View, b: Option<&View>, sum_shape: &[usize], sum_strides: &[Vec<isize>; 2], index: &[usize]) -> f32 {
    let base_a = element(a, index) as isize;
    let base_b = b.map(|b| element(b, index) as isize).unwrap_or(0);
    let count: usize = sum_shape.iter().product();
    let mut i = vec![0; sum_shape.len()];
    let mut acc = 0.0;
    for linear in 0..count {
        unravel(linear, sum_shape, &mut i);
        let offset = |base: isize, strides: &[isize]| i.iter().zip(strides).fold(base, |at, (i, s)| at + *i as isize * s) as usize;
        let va = m.get(a.space, offset(base_a, &sum_strides[0]));
        let vb = b.map(|b| m.get(b.space, offset(base_b, &sum_strides[1]))).unwrap_or(1.0);
        acc += va * vb;
    }
    acc
}

/// The input position a window tap reads, or None in the padding.
fn tap(out: usize, k: usize, axis: usize, w: &Window, len: usize) -> Option<usize> {
    let at = (out * w.strides[axis] + k * w.dilations[axis]) as isize - w.pad_before[axis] as isize;
    (at >= 0 && (at as usize) < len).then_some(at as usize)
}

/// A convolution (with `tap`) or a transposed one (with `source`): `at(out, k, axis, window, len)`
/// gives the input position that kernel tap `k` meets at output position `out`, if any.
type Position = fn(usize, usize, usize, &Window, usize) -> Option<usize>;

#[allow(clippy::too_many_arguments)]
fn conv(m: &Memory, x: &View, kernel: &View, bias: &View, w: &Window, group: usize, o: &[usize], at: Position) -> f32 {
    let (n, co, y, xo) = (o[0], o[1], o[2], o[3]);
    let ci_per_group = kernel.shape[1];
    let co_per_group = kernel.shape[0] / group;
    let g = co / co_per_group;
    let mut acc = m.load(bias, &[co]);
    for ky in 0..w.kernel[0] {
        let Some(iy) = at(y, ky, 0, w, x.shape[2]) else { continue };
        for kx in 0..w.kernel[1] {
            let Some(ix) = at(xo, kx, 1, w, x.shape[3]) else { continue };
            for i in 0..ci_per_group {
                acc += m.load(x, &[n, g * ci_per_group + i, iy, ix]) * m.load(kernel, &[co, i, ky, kx]);
            }
        }
    }
    acc
}

/// The input position whose tap `k` lands on output position `out`, if any.
fn source(out: usize, k: usize, axis: usize, w: &Window, len: usize) -> Option<usize> {
    let t = (out + w.pad_before[axis]) as isize - (k * w.dilations[axis]) as isize;
    let s = w.strides[axis] as isize;
    (t >= 0 && t % s == 0 && ((t / s) as usize) < len).then_some((t / s) as usize)
}

fn pool(m: &Memory, kind: PoolKind, x: &View, w: &Window, o: &[usize]) -> f32 {
    let (n, c, y, xo) = (o[0], o[1], o[2], o[3]);
    let mut acc = if kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 };
    let mut count = 0;
    for ky in 0..w.kernel[0] {
        let Some(iy) = tap(y, ky, 0, w, x.shape[2]) else { continue };
        for kx in 0..w.kernel[1] {
            let Some(ix) = tap(xo, kx, 1, w, x.shape[3]) else { continue };
            let v = m.load(x, &[n, c, iy, ix]);
            acc = if kind == PoolKind::Max { acc.max(v) } else { acc + v };
            count += 1;
        }
    }
    match kind {
        PoolKind::Sum { normalize: true, count_include_pad: true } => acc / (w.kernel[0] * w.kernel[1]) as f32,
        PoolKind::Sum { normalize: true, count_include_pad: false } => acc / count as f32,
        _ => acc,
    }
}

/// The position (row, column) of the first maximum of window (y, x), as tract's MaxPool picks it.
fn window_max(m: &Memory, x: &View, w: &Window, n: usize, c: usize, y: usize, xo: usize) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize, f32)> = None;
    for ky in 0..w.kernel[0] {
        let Some(iy) = tap(y, ky, 0, w, x.shape[2]) else { continue };
        for kx in 0..w.kernel[1] {
            let Some(ix) = tap(xo, kx, 1, w, x.shape[3]) else { continue };
            let v = m.load(x, &[n, c, iy, ix]);
            if best.is_none_or(|(_, _, b)| v > b) {
                best = Some((iy, ix, v));
            }
        }
    }
    best.map(|(iy, ix, _)| (iy, ix))
}

fn max_pool_backward(m: &Memory, x: &View, dy: &View, w: &Window, o: &[usize]) -> f32 {
    let (n, c, h, wo) = (o[0], o[1], o[2], o[3]);
    let mut acc = 0.0;
    for ky in 0..w.kernel[0] {
        let Some(oy) = source(h, ky, 0, w, dy.shape[2]) else { continue };
        for kx in 0..w.kernel[1] {
            let Some(ox) = source(wo, kx, 1, w, dy.shape[3]) else { continue };
            if window_max(m, x, w, n, c, oy, ox) == Some((h, wo)) {
                acc += m.load(dy, &[n, c, oy, ox]);
            }
        }
    }
    acc
}
