// Shared by every kernel: the two memories, the step's parameters, loads and the thread index.
// Each step gets 64 parameter words (a 256-byte slot of one uniform buffer, dynamic offset);
// offsets and strides count f32 elements; space 0 = weights, 1 = work, anything else = absent.

@group(0) @binding(0) var<storage, read> weights: array<f32>;
@group(0) @binding(1) var<storage, read_write> work: array<f32>;

struct Params {
    w: array<vec4<u32>, 16>,
}
@group(0) @binding(2) var<uniform> params: Params;

fn p(i: u32) -> u32 {
    return params.w[i / 4u][i % 4u];
}

fn pi(i: u32) -> i32 {
    return bitcast<i32>(p(i));
}

fn pf(i: u32) -> f32 {
    return bitcast<f32>(p(i));
}

// NaN and the infinities by their bits. Browsers' WGSL compilers (Tint) refuse a constant
// expression whose value is not finite, and a user function's result is never one.
fn from_bits(bits: u32) -> f32 {
    return bitcast<f32>(bits);
}

fn ld(space: u32, at: i32) -> f32 {
    if (space == 0u) {
        return weights[at];
    }
    if (space == 1u) {
        return work[at];
    }
    return 0.0;
}

const WORKGROUP: u32 = 64u;

// Dispatches are (x, y) grids of workgroups: x at most 65535, y for the rest.
fn thread_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WORKGROUP;
}

// Where thread `t` sits in an [N, C, H, W] output: its indices, and its element offset, with the
// shape in words `shape`..`shape`+3, the offset in word `offset` and the strides from word `strides`.
struct Nchw {
    n: u32,
    c: u32,
    y: u32,
    x: u32,
    at: i32,
}

fn nchw_position(t: u32, shape: u32, offset: u32, strides: u32) -> Nchw {
    var o: Nchw;
    o.x = t % p(shape + 3u);
    var r = t / p(shape + 3u);
    o.y = r % p(shape + 2u);
    r = r / p(shape + 2u);
    o.c = r % p(shape + 1u);
    o.n = r / p(shape + 1u);
    o.at = pi(offset) + i32(o.n) * pi(strides) + i32(o.c) * pi(strides + 1u) + i32(o.y) * pi(strides + 2u)
        + i32(o.x) * pi(strides + 3u);
    return o;
}

// A window op's forward tap: the input row (or column, by `axis`) that output row `o` reads at
// kernel row `k`, or -1 in the padding; strides in words `window`.., dilations `window`+2..,
// padding before `window`+4.. (the same layout in conv and pool).
fn window_tap(o: u32, k: u32, axis: u32, len: u32, window: u32) -> i32 {
    let at = i32(o * p(window + axis) + k * p(window + 2u + axis)) - i32(p(window + 4u + axis));
    return select(-1, at, at >= 0 && at < i32(len));
}
