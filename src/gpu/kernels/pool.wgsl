// Max and sum/average pools over [N, C, H, W] views, and the max pool's input gradient (each
// window's dy to its first maximum, gathered per input value). Words: 0 n, 1 x space, 2 kind
// (0 max, 1 sum, 2 average counting padding, 3 average over valid values), 3 out offset,
// 4 x offset, 5..9 output shape, 9..13 output strides, 13..17 x strides, 17 x height,
// 18 x width, 19 kernel height, 20 kernel width, 21..23 strides, 23..25 dilations,
// 25..27 padding before, 27 dy space, 28 dy offset, 29..33 dy strides, 33 dy height, 34 dy width.

fn source(o: u32, k: u32, axis: u32, len: u32) -> i32 {
    let t = i32(o + p(25u + axis)) - i32(k * p(23u + axis));
    let s = i32(p(21u + axis));
    if (t < 0 || t % s != 0 || t / s >= i32(len)) {
        return -1;
    }
    return t / s;
}

@compute @workgroup_size(64)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = thread_index(gid, groups);
    if (t >= p(0u)) {
        return;
    }
    let o = nchw_position(t, 5u, 3u, 9u);
    let kind = p(2u);
    let base = pi(4u) + i32(o.n) * pi(13u) + i32(o.c) * pi(14u);
    var acc = 0.0;
    if (kind == 0u) {
        acc = from_bits(0xff800000u);
    }
    var count = 0u;
    for (var ky = 0u; ky < p(19u); ky++) {
        let iy = window_tap(o.y, ky, 0u, p(17u), 21u);
        if (iy < 0) {
            continue;
        }
        for (var kx = 0u; kx < p(20u); kx++) {
            let ix = window_tap(o.x, kx, 1u, p(18u), 21u);
            if (ix < 0) {
                continue;
            }
            let v = ld(p(1u), base + iy * pi(15u) + ix * pi(16u));
            if (kind == 0u) {
                acc = max(acc, v);
            } else {
                acc += v;
            }
            count++;
        }
    }
    if (kind == 2u) {
        acc = acc / f32(p(19u) * p(20u));
    } else if (kind == 3u) {
        acc = acc / f32(count);
    }
    work[o.at] = acc;
}

// the flat x position (row * width + column) of window (y, x)'s first maximum, or -1
fn window_max(base: i32, y: u32, x: u32) -> i32 {
    var best = -1;
    var best_v = 0.0;
    for (var ky = 0u; ky < p(19u); ky++) {
        let iy = window_tap(y, ky, 0u, p(17u), 21u);
        if (iy < 0) {
            continue;
        }
        for (var kx = 0u; kx < p(20u); kx++) {
            let ix = window_tap(x, kx, 1u, p(18u), 21u);
            if (ix < 0) {
                continue;
            }
            let v = ld(p(1u), base + iy * pi(15u) + ix * pi(16u));
            if (best < 0 || v > best_v) {
                best = iy * i32(p(18u)) + ix;
                best_v = v;
            }
        }
    }
    return best;
}

@compute @workgroup_size(64)
fn max_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = thread_index(gid, groups);
    if (t >= p(0u)) {
        return;
    }
    let o = nchw_position(t, 5u, 3u, 9u);
    let base = pi(4u) + i32(o.n) * pi(13u) + i32(o.c) * pi(14u);
    let dbase = pi(28u) + i32(o.n) * pi(29u) + i32(o.c) * pi(30u);
    let me = i32(o.y * p(18u) + o.x);
    var acc = 0.0;
    for (var ky = 0u; ky < p(19u); ky++) {
        let wy = source(o.y, ky, 0u, p(33u));
        if (wy < 0) {
            continue;
        }
        for (var kx = 0u; kx < p(20u); kx++) {
            let wx = source(o.x, kx, 1u, p(34u));
            if (wx < 0) {
                continue;
            }
            if (window_max(base, u32(wy), u32(wx)) == me) {
                acc += ld(p(27u), dbase + wy * pi(31u) + wx * pi(32u));
            }
        }
    }
    work[o.at] = acc;
}
