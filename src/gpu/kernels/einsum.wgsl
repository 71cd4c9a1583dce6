// Two-operand (or one-operand) einsum: every output value sums a * b over up to four summed
// axes. Words: 0 n, 1 a space, 2 b space (2: absent, b = 1), 3 out offset, 4 a offset,
// 5 b offset, 6..12 output shape, 12..18 a strides, 18..24 b strides (along output axes),
// 24..28 summed shape, 28..32 a strides, 32..36 b strides (along summed axes).

@compute @workgroup_size(64)
fn einsum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = thread_index(gid, groups);
    if (t >= p(0u)) {
        return;
    }
    var rest = t;
    var ia = pi(4u);
    var ib = pi(5u);
    for (var k = 0u; k < 6u; k++) {
        let d = 5u - k;
        let n = p(6u + d);
        let i = i32(rest % n);
        rest = rest / n;
        ia += i * pi(12u + d);
        ib += i * pi(18u + d);
    }
    let sa = p(1u);
    let sb = p(2u);
    let n0 = p(24u);
    let n1 = p(25u);
    let n2 = p(26u);
    let n3 = p(27u);
    var acc = 0.0;
    for (var i0 = 0u; i0 < n0; i0++) {
        let a0 = ia + i32(i0) * pi(28u);
        let b0 = ib + i32(i0) * pi(32u);
        for (var i1 = 0u; i1 < n1; i1++) {
            let a1 = a0 + i32(i1) * pi(29u);
            let b1 = b0 + i32(i1) * pi(33u);
            for (var i2 = 0u; i2 < n2; i2++) {
                let a2 = a1 + i32(i2) * pi(30u);
                let b2 = b1 + i32(i2) * pi(34u);
                for (var i3 = 0u; i3 < n3; i3++) {
                    let va = ld(sa, a2 + i32(i3) * pi(31u));
                    var vb = 1.0;
                    if (sb != 2u) {
                        vb = ld(sb, b2 + i32(i3) * pi(35u));
                    }
                    acc += va * vb;
                }
            }
        }
    }
    work[pi(3u) + i32(t)] = acc;
}
