// Reductions over axes kept as size 1, one thread per output value. Words: 0 n, 1 op (0 sum,
// 1 max, 2 min, 3 product, 4 mean of squares), 2 input space, 3 out offset, 4 input offset,
// 5 values per output, 6..12 output shape, 12..18 reduced shape, 18..24 input strides.

@compute @workgroup_size(64)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = thread_index(gid, groups);
    if (t >= p(0u)) {
        return;
    }
    var rest = t;
    var base = pi(4u);
    for (var k = 0u; k < 6u; k++) {
        let d = 5u - k;
        let n = p(6u + d);
        base += i32(rest % n) * pi(18u + d);
        rest = rest / n;
    }
    let op = p(1u);
    let space = p(2u);
    let count = p(5u);
    var acc = 0.0;
    if (op == 1u) {
        acc = from_bits(0xff800000u);
    } else if (op == 2u) {
        acc = from_bits(0x7f800000u);
    } else if (op == 3u) {
        acc = 1.0;
    }
    for (var j = 0u; j < count; j++) {
        var r = j;
        var at = base;
        for (var k = 0u; k < 6u; k++) {
            let d = 5u - k;
            let n = p(12u + d);
            at += i32(r % n) * pi(18u + d);
            r = r / n;
        }
        let v = ld(space, at);
        switch op {
            case 0u: { acc += v; }
            case 1u: { acc = max(acc, v); }
            case 2u: { acc = min(acc, v); }
            case 3u: { acc *= v; }
            default: { acc += v * v; }
        }
    }
    if (op == 4u) {
        acc = acc / f32(count);
    }
    work[pi(3u) + i32(t)] = acc;
}
