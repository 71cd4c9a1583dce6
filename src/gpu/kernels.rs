//! The WGSL kernels (src/gpu/kernels/*.wgsl) and each step's parameter words: the pure part of
//! turning a Plan into dispatches, testable without a GPU.

use super::plan::{Binary, Kernel, MapOp, PoolKind, Reduction, Space, Unary, View, Window, MAX_RANK, MAX_SUM_RANK};

/// Bindings, parameter access and loads every kernel shares.
pub const COMMON: &str = include_str!("kernels/common.wgsl");

/// The kernel families, one WGSL file each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Map,
    Reduce,
    EinSum,
    Conv,
    Pool,
}

impl Family {
    pub const ALL: [Family; 5] = [Family::Map, Family::Reduce, Family::EinSum, Family::Conv, Family::Pool];

    /// The WGSL of this family, with the shared part in front.
    pub fn source(self) -> String {
        let own = match self {
            Family::Map => include_str!("kernels/map.wgsl"),
            Family::Reduce => include_str!("kernels/reduce.wgsl"),
            Family::EinSum => include_str!("kernels/einsum.wgsl"),
            Family::Conv => include_str!("kernels/conv.wgsl"),
            Family::Pool => include_str!("kernels/pool.wgsl"),
        };
        format!("{COMMON}\n{own}")
    }

    pub fn entry_points(self) -> &'static [&'static str] {
        match self {
            Family::Map => &["map"],
            Family::Reduce => &["reduce"],
            Family::EinSum => &["einsum"],
            Family::Conv => &["conv", "deconv"],
            Family::Pool => &["pool", "max_pool_backward"],
        }
    }
}

/// Parameter words per step: one 256-byte uniform slot (WebGPU's dynamic offset alignment).
pub const PARAM_WORDS: usize = 64;
/// Threads per workgroup (`@workgroup_size(64)` in every kernel).
pub const WORKGROUP: usize = 64;
/// WebGPU's default limit on workgroups along one dispatch dimension.
pub const MAX_GROUPS_PER_DIM: usize = 65535;

/// What one step dispatches: the entry point, its parameter words and its workgroup grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub family: Family,
    pub entry: &'static str,
    pub params: Vec<u32>,
    pub groups: (u32, u32),
}

/// Workgroups for `threads` threads: x up to the per-dimension limit, y for the rest.
pub fn grid(threads: usize) -> (u32, u32) {
    let groups = threads.div_ceil(WORKGROUP).max(1);
    if groups <= MAX_GROUPS_PER_DIM {
        (groups as u32, 1)
    } else {
        (MAX_GROUPS_PER_DIM as u32, groups.div_ceil(MAX_GROUPS_PER_DIM) as u32)
    }
}

fn space(v: Option<&View>) -> u32 {
    match v.map(|v| v.space) {
        Some(Space::Weights) => 0,
        Some(Space::Work) => 1,
        None => 2,
    }
}

fn word(i: isize) -> u32 {
    i as i32 as u32
}

/// Shape and strides right-aligned to `rank` axes (leading axes of size 1, stride 0).
fn padded(v: &View, rank: usize) -> (Vec<u32>, Vec<u32>) {
    let extra = rank - v.shape.len();
    let mut shape = vec![1u32; extra];
    let mut strides = vec![0u32; extra];
    shape.extend(v.shape.iter().map(|&d| d as u32));
    strides.extend(v.strides.iter().map(|&s| word(s)));
    (shape, strides)
}

fn unary_code(u: Unary) -> (u32, f32) {
    match u {
        Unary::Copy => (0, 0.0),
        Unary::Fill(v) => (1, v),
        Unary::Neg => (2, 0.0),
        Unary::Abs => (3, 0.0),
        Unary::Sign => (4, 0.0),
        Unary::Exp => (5, 0.0),
        Unary::Ln => (6, 0.0),
        Unary::Sqrt => (7, 0.0),
        Unary::Rsqrt => (8, 0.0),
        Unary::Recip => (9, 0.0),
        Unary::Square => (10, 0.0),
        Unary::Sigmoid => (11, 0.0),
        Unary::Tanh => (12, 0.0),
        Unary::Erf => (13, 0.0),
        Unary::Sin => (14, 0.0),
        Unary::Cos => (15, 0.0),
        Unary::PowConst(c) => (16, c),
        Unary::LeakyRelu(alpha) => (17, alpha),
    }
}

fn binary_code(b: Binary) -> u32 {
    32 + match b {
        Binary::Add => 0,
        Binary::Sub => 1,
        Binary::Mul => 2,
        Binary::Div => 3,
        Binary::Max => 4,
        Binary::Min => 5,
        Binary::Pow => 6,
        Binary::Eq => 7,
        Binary::Ne => 8,
        Binary::Lt => 9,
        Binary::Gt => 10,
        Binary::Le => 11,
        Binary::Ge => 12,
        Binary::ReluGate => 13,
    }
}

fn window_words(w: &Window) -> [u32; 6] {
    [w.strides[0], w.strides[1], w.dilations[0], w.dilations[1], w.pad_before[0], w.pad_before[1]].map(|v| v as u32)
}

fn u(v: usize) -> u32 {
    v as u32
}

/// The dispatch of one kernel; the layouts are documented at the top of each .wgsl file.
pub fn dispatch(kernel: &Kernel) -> Dispatch {
    let out = kernel.output();
    let n = u(kernel.threads());
    let transposed = matches!(kernel, Kernel::Deconv { .. });
    let (family, entry, params) = match kernel {
        Kernel::Map { op, a, b, .. } => {
            let (code, constant) = match op {
                MapOp::Unary(un) => unary_code(*un),
                MapOp::Binary(bin) => (binary_code(*bin), 0.0),
            };
            let (shape, out_strides) = padded(out, MAX_RANK);
            let strides = |v: &Option<View>| v.as_ref().map(|v| padded(v, MAX_RANK).1).unwrap_or(vec![0; MAX_RANK]);
            let offset = |v: &Option<View>| v.as_ref().map(|v| u(v.offset)).unwrap_or(0);
            let mut w = vec![n, code, constant.to_bits(), space(a.as_ref()), space(b.as_ref()), u(out.offset), offset(a), offset(b)];
            w.extend(shape);
            w.extend(out_strides);
            w.extend(strides(a));
            w.extend(strides(b));
            (Family::Map, "map", w)
        }
        Kernel::Reduce { op, input, axes, .. } => {
            assert!(out.is_contiguous(), "reductions write contiguous outputs");
            let code = match op {
                Reduction::Sum => 0,
                Reduction::Max => 1,
                Reduction::Min => 2,
                Reduction::Prod => 3,
                Reduction::MeanOfSquares => 4,
            };
            let (in_shape, in_strides) = padded(input, MAX_RANK);
            let extra = MAX_RANK - input.shape.len();
            let outer: Vec<u32> = (0..MAX_RANK).map(|d| if d >= extra && axes.contains(&(d - extra)) { 1 } else { in_shape[d] }).collect();
            let inner: Vec<u32> = (0..MAX_RANK).map(|d| if d >= extra && axes.contains(&(d - extra)) { in_shape[d] } else { 1 }).collect();
            let count = inner.iter().product::<u32>();
            let mut w = vec![n, code, space(Some(input)), u(out.offset), u(input.offset), count];
            w.extend(outer);
            w.extend(inner);
            w.extend(in_strides);
            (Family::Reduce, "reduce", w)
        }
        Kernel::EinSum { a, b, sum_shape, sum_strides, .. } => {
            assert!(out.is_contiguous(), "einsums write contiguous outputs");
            let pad4 = |v: Vec<u32>, fill: u32| {
                let mut p = vec![fill; MAX_SUM_RANK - v.len()];
                p.extend(v);
                p
            };
            let mut w = vec![n, space(Some(a)), space(b.as_ref()), u(out.offset), u(a.offset), b.as_ref().map(|b| u(b.offset)).unwrap_or(0)];
            w.extend(padded(out, MAX_RANK).0);
            w.extend(padded(a, MAX_RANK).1);
            w.extend(b.as_ref().map(|b| padded(b, MAX_RANK).1).unwrap_or(vec![0; MAX_RANK]));
            w.extend(pad4(sum_shape.iter().map(|&d| u(d)).collect(), 1));
            w.extend(pad4(sum_strides[0].iter().map(|&s| word(s)).collect(), 0));
            w.extend(pad4(sum_strides[1].iter().map(|&s| word(s)).collect(), 0));
            (Family::EinSum, "einsum", w)
        }
        Kernel::Conv { x, kernel, bias, window, group, .. } | Kernel::Deconv { x, kernel, bias, window, group, .. } => {
            let entry = if transposed { "deconv" } else { "conv" };
            let mut w = vec![n, space(Some(x)), space(Some(kernel)), space(Some(bias)), u(out.offset), u(x.offset), u(kernel.offset), u(bias.offset), word(bias.strides[0])];
            w.extend(out.shape.iter().map(|&d| u(d)));
            w.extend(out.strides.iter().map(|&s| word(s)));
            w.extend(x.strides.iter().map(|&s| word(s)));
            w.extend([u(x.shape[2]), u(x.shape[3]), u(kernel.shape[1]), u(kernel.shape[0] / group)]);
            w.extend(kernel.strides.iter().map(|&s| word(s)));
            w.extend([u(window.kernel[0]), u(window.kernel[1])]);
            w.extend(window_words(window));
            (Family::Conv, entry, w)
        }
        Kernel::Pool { kind, x, window, .. } => {
            let code = match kind {
                PoolKind::Max => 0,
                PoolKind::Sum { normalize: false, .. } => 1,
                PoolKind::Sum { normalize: true, count_include_pad: true } => 2,
                PoolKind::Sum { normalize: true, count_include_pad: false } => 3,
            };
            (Family::Pool, "pool", pool_words(n, code, out, x, window, None))
        }
        Kernel::MaxPoolBackward { x, dy, window, .. } => {
            (Family::Pool, "max_pool_backward", pool_words(n, 0, out, x, window, Some(dy)))
        }
    };
    assert!(params.len() <= PARAM_WORDS, "{} parameter words", params.len());
    Dispatch { family, entry, params, groups: grid(kernel.threads()) }
}

fn pool_words(n: u32, code: u32, out: &View, x: &View, window: &Window, dy: Option<&View>) -> Vec<u32> {
    let mut w = vec![n, space(Some(x)), code, u(out.offset), u(x.offset)];
    w.extend(out.shape.iter().map(|&d| u(d)));
    w.extend(out.strides.iter().map(|&s| word(s)));
    w.extend(x.strides.iter().map(|&s| word(s)));
    w.extend([u(x.shape[2]), u(x.shape[3]), u(window.kernel[0]), u(window.kernel[1])]);
    w.extend(window_words(window));
    if let Some(dy) = dy {
        w.extend([space(Some(dy)), u(dy.offset)]);
        w.extend(dy.strides.iter().map(|&s| word(s)));
        w.extend([u(dy.shape[2]), u(dy.shape[3])]);
    }
    w
}
