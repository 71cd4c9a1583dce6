// 2-D convolution and transposed convolution over [N, C, H, W] views, groups, strides,
// dilations and padding; one thread per output value. Words: 0 n, 1 x space, 2 kernel space,
// 3 bias space, 4 out offset, 5 x offset, 6 kernel offset, 7 bias offset, 8 bias stride,
// 9..13 output shape, 13..17 output strides, 17..21 x strides, 21 x height, 22 x width,
// 23 input channels per group, 24 output channels per group, 25..29 kernel strides [O, I, KH, KW],
// 29 kernel height, 30 kernel width, 31..33 strides, 33..35 dilations, 35..37 padding before.

// transposed tap: the input row whose kernel row `k` lands on output row `o`, or -1
fn source(o: u32, k: u32, axis: u32, len: u32) -> i32 {
    let t = i32(o + p(35u + axis)) - i32(k * p(33u + axis));
    let s = i32(p(31u + axis));
    if (t < 0 || t % s != 0 || t / s >= i32(len)) {
        return -1;
    }
    return t / s;
}

// the input row (or column, by `axis`) that kernel row `k` pairs with output row `o`, or -1
fn input_row(o: u32, k: u32, axis: u32, len: u32, transposed: bool) -> i32 {
    if (transposed) {
        return source(o, k, axis, len);
    }
    return window_tap(o, k, axis, len, 31u);
}

fn convolve(t: u32, transposed: bool) {
    let o = nchw_position(t, 9u, 4u, 13u);
    let cig = p(23u);
    let g = o.c / p(24u);
    var acc = ld(p(3u), pi(7u) + i32(o.c) * pi(8u));
    let xs = p(1u);
    let ks = p(2u);
    let xbase = pi(5u) + i32(o.n) * pi(17u) + i32(g * cig) * pi(18u);
    let kbase = pi(6u) + i32(o.c) * pi(25u);
    for (var ky = 0u; ky < p(29u); ky++) {
        let iy = input_row(o.y, ky, 0u, p(21u), transposed);
        if (iy < 0) {
            continue;
        }
        for (var kx = 0u; kx < p(30u); kx++) {
            let ix = input_row(o.x, kx, 1u, p(22u), transposed);
            if (ix < 0) {
                continue;
            }
            let xat = xbase + iy * pi(19u) + ix * pi(20u);
            let kat = kbase + i32(ky) * pi(27u) + i32(kx) * pi(28u);
            for (var i = 0u; i < cig; i++) {
                acc += ld(xs, xat + i32(i) * pi(18u)) * ld(ks, kat + i32(i) * pi(26u));
            }
        }
    }
    work[o.at] = acc;
}

@compute @workgroup_size(64)
fn conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = thread_index(gid, groups);
    if (t < p(0u)) {
        convolve(t, false);
    }
}

@compute @workgroup_size(64)
fn deconv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = thread_index(gid, groups);
    if (t < p(0u)) {
        convolve(t, true);
    }
}
