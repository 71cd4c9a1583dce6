// The peer: a TensorFlow.js model of the same architecture as an ONNX graph, with its weights.
// Convolutions run in TensorFlow.js's own layout (NHWC, HWIO filters); a BatchNormalization right
// after a Conv is folded into it, as a careful port would do.

/** The op set of the benchmark's models (the shipped MNIST nets and the MobileNet-class graph). */
const SUPPORTED = new Set(['Add', 'BatchNormalization', 'Clip', 'Constant', 'Conv', 'Div', 'Dropout', 'Flatten',
  'Gemm', 'GlobalAveragePool', 'Identity', 'MatMul', 'MaxPool', 'Mul', 'Relu', 'Reshape', 'Sigmoid', 'Sub']);

/** Transposes an OIHW filter (as a flat array) to HWIO; with `depthwise`, to H W C 1. */
function filterHwio(data, [o, i, h, w]) {
  const out = new Float32Array(data.length);
  for (let a = 0; a < o; a++) for (let b = 0; b < i; b++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    out[((y * w + x) * i + b) * o + a] = data[((a * i + b) * h + y) * w + x];
  }
  return out;
}

/**
 * Folds each BatchNormalization whose input is a Conv's only use into that Conv; returns the
 * node list without those BatchNormalizations and the folded weights by conv node.
 */
function foldBatchNorms(graph) {
  const uses = new Map();
  for (const n of graph.nodes) for (const i of n.inputs) uses.set(i, (uses.get(i) ?? 0) + 1);
  const producer = new Map(graph.nodes.flatMap((n) => n.outputs.map((o) => [o, n])));
  const init = (name) => graph.initializers.get(name)?.data;
  const folded = new Map(); // conv node -> { weight, bias }
  const alias = new Map(); // BN output -> conv output
  const kept = [];
  for (const n of graph.nodes) {
    const conv = n.op === 'BatchNormalization' ? producer.get(n.inputs[0]) : null;
    if (!conv || conv.op !== 'Conv' || uses.get(n.inputs[0]) !== 1 || folded.has(conv)) { kept.push(n); continue; }
    const [gamma, beta, mean, variance] = n.inputs.slice(1).map(init);
    const eps = n.attributes.epsilon ?? 1e-5;
    const w = graph.initializers.get(conv.inputs[1]);
    const perOut = w.data.length / w.dims[0];
    const weight = Float32Array.from(w.data);
    const bias = new Float32Array(w.dims[0]);
    const b0 = conv.inputs[2] ? init(conv.inputs[2]) : null;
    for (let o = 0; o < w.dims[0]; o++) {
      const scale = gamma[o] / Math.sqrt(variance[o] + eps);
      for (let k = 0; k < perOut; k++) weight[o * perOut + k] *= scale;
      bias[o] = ((b0 ? b0[o] : 0) - mean[o]) * scale + beta[o];
    }
    folded.set(conv, { weight, bias });
    alias.set(n.outputs[0], conv.outputs[0]);
  }
  return { nodes: kept, folded, alias };
}

/**
 * Builds the peer for `graph` (from readOnnx) on TensorFlow.js `tf`'s current backend. Returns
 * { forward(x) -> logits, variables (with `trainable`), flops, dispose() }: `x` is an NCHW tensor; `flops` is 2 x the
 * multiply-adds of the convolutions and matrix products of one forward pass (known after the
 * first call).
 */
export function buildPeer(tf, graph, { trainable = false } = {}) {
  for (const n of graph.nodes) {
    if (!SUPPORTED.has(n.op)) throw new Error(`the benchmark's TensorFlow.js port has no ${n.op} (node ${n.name})`);
  }
  const { nodes, folded, alias } = foldBatchNorms(graph);
  const owned = [];
  // tf.keep: constants made lazily inside the caller's tf.tidy must outlive it
  const keep = (t) => { owned.push(tf.keep(t)); return t; };
  // `trainable`: each layer's weight and bias (in the layout the port computes with) is a
  // tf.Variable, what a TensorFlow.js optimiser trains
  const variables = [];
  const weight = (t) => {
    if (!trainable) return keep(t);
    const v = tf.variable(t);
    t.dispose();
    variables.push(v);
    owned.push(v);
    return v;
  };
  const constants = new Map(); // name -> { dims, data }
  for (const [name, t] of graph.initializers) constants.set(name, t);
  for (const n of nodes) if (n.op === 'Constant') constants.set(n.outputs[0], n.attributes.value);
  const constTensor = new Map();
  /** A constant as a tensor; 4-D ones moved to NHWC when used against an NHWC value. */
  const constant = (name, nhwc) => {
    const key = `${name}|${nhwc}`;
    if (!constTensor.has(key)) {
      const c = constants.get(name);
      let t = tf.tensor(Float32Array.from(c.data), c.dims.length ? c.dims : []);
      if (nhwc && c.dims.length === 4) t = tf.transpose(t, [0, 2, 3, 1]);
      else if (nhwc && c.dims.length > 1 && c.data.length > 1) throw new Error(`constant ${name} [${c.dims}] against an NHWC value`);
      constTensor.set(key, keep(t));
    }
    return constTensor.get(key);
  };

  // Per-node prepared weights
  const prepared = new Map();
  for (const n of nodes) {
    if (n.op === 'Conv') {
      const w = graph.initializers.get(n.inputs[1]);
      const f = folded.get(n);
      const data = f ? f.weight : w.data;
      const bias = f ? f.bias : n.inputs[2] ? graph.initializers.get(n.inputs[2]).data : null;
      const [o, i, h, wd] = w.dims;
      const group = n.attributes.group ?? 1;
      let filter;
      let depthwise = false;
      if (group === 1) filter = tf.tensor4d(filterHwio(data, w.dims), [h, wd, i, o]);
      else if (group === o && i === 1) {
        depthwise = true; // OIHW [C,1,h,w] -> [h,w,C,1]
        filter = tf.tensor4d(filterHwio(data, w.dims), [h, wd, o, 1]); // same order as [h, wd, 1, o]
      } else throw new Error(`Conv ${n.name}: grouped convolution (group ${group}) is not in the port`);
      const [t, l, b, r] = n.attributes.pads ?? [0, 0, 0, 0];
      const pad = t === l && l === b && b === r ? t : [[0, 0], [t, b], [l, r], [0, 0]];
      prepared.set(n, {
        filter: weight(filter), bias: bias ? weight(tf.tensor1d(Float32Array.from(bias))) : null, depthwise, pad,
        strides: n.attributes.strides ?? [1, 1], dilations: n.attributes.dilations ?? [1, 1], macs: o * i * h * wd,
      });
    } else if (n.op === 'Gemm' || n.op === 'MatMul') {
      const b = graph.initializers.get(n.inputs[1]);
      if (!b) throw new Error(`${n.op} ${n.name}: the port needs a constant second operand`);
      let m = tf.tensor2d(Float32Array.from(b.data), b.dims);
      if (n.attributes.transB) m = tf.transpose(m);
      const alpha = n.attributes.alpha ?? 1;
      if (alpha !== 1) m = tf.mul(m, alpha);
      const c = n.inputs[2] ? graph.initializers.get(n.inputs[2]) : null;
      const beta = n.attributes.beta ?? 1;
      if (n.attributes.transA) throw new Error(`Gemm ${n.name}: transA is not in the port`);
      prepared.set(n, {
        matrix: weight(m), bias: c ? weight(tf.mul(tf.tensor(Float32Array.from(c.data), c.dims), beta)) : null,
        macs: b.data.length,
      });
    }
  }

  let flops = null;
  function forward(x) {
    const values = new Map(); // name -> { t, nhwc }
    values.set(graph.inputs[0].name, { t: x, nhwc: false });
    const get = (name) => values.get(alias.get(name) ?? name);
    const nchw = (v) => (v.nhwc ? tf.transpose(v.t, [0, 3, 1, 2]) : v.t);
    const nhwc = (v) => (v.nhwc ? v.t : tf.transpose(v.t, [0, 2, 3, 1]));
    let counted = 0;
    for (const n of nodes) {
      const a = n.op === 'Constant' ? null : get(n.inputs[0]);
      const operand = (k) => {
        const name = n.inputs[k];
        if (constants.has(name)) return constant(name, a.nhwc);
        const v = get(name);
        if (v.nhwc === a.nhwc) return v.t;
        return a.nhwc ? nhwc(v) : nchw(v);
      };
      let out;
      switch (n.op) {
        case 'Constant': continue;
        case 'Identity': case 'Dropout': out = a; break;
        case 'Relu': out = { t: tf.relu(a.t), nhwc: a.nhwc }; break;
        case 'Sigmoid': out = { t: tf.sigmoid(a.t), nhwc: a.nhwc }; break;
        case 'Clip': {
          const bound = (k, attr, dflt) => (n.inputs[k] ? constants.get(n.inputs[k]).data[0] : n.attributes[attr] ?? dflt);
          out = { t: tf.clipByValue(a.t, bound(1, 'min', -3.4e38), bound(2, 'max', 3.4e38)), nhwc: a.nhwc };
          break;
        }
        case 'Add': out = { t: tf.add(a.t, operand(1)), nhwc: a.nhwc }; break;
        case 'Sub': out = { t: tf.sub(a.t, operand(1)), nhwc: a.nhwc }; break;
        case 'Mul': out = { t: tf.mul(a.t, operand(1)), nhwc: a.nhwc }; break;
        case 'Div': out = { t: tf.div(a.t, operand(1)), nhwc: a.nhwc }; break;
        case 'Conv': {
          const p = prepared.get(n);
          const input = nhwc(a);
          let y = p.depthwise
            ? tf.depthwiseConv2d(input, p.filter, p.strides, p.pad, 'NHWC', p.dilations)
            : tf.conv2d(input, p.filter, p.strides, p.pad, 'NHWC', p.dilations);
          if (p.bias) y = tf.add(y, p.bias);
          counted += 2 * p.macs * y.shape[1] * y.shape[2] * y.shape[0];
          out = { t: y, nhwc: true };
          break;
        }
        case 'BatchNormalization': {
          const [scale, offset, mean, variance] = n.inputs.slice(1).map((k) => constant(k, false));
          out = { t: tf.batchNorm(nhwc(a), mean, variance, offset, scale, n.attributes.epsilon ?? 1e-5), nhwc: true };
          break;
        }
        case 'MaxPool': {
          const [t, l, b, r] = n.attributes.pads ?? [0, 0, 0, 0];
          if (t !== l || l !== b || b !== r) throw new Error(`MaxPool ${n.name}: uneven padding is not in the port`);
          out = { t: tf.maxPool(nhwc(a), n.attributes.kernel_shape, n.attributes.strides ?? n.attributes.kernel_shape, t || 'valid'), nhwc: true };
          break;
        }
        case 'GlobalAveragePool': out = { t: tf.mean(nhwc(a), [1, 2], true), nhwc: true }; break;
        case 'Flatten': {
          const t = nchw(a);
          const axis = n.attributes.axis ?? 1;
          const outer = t.shape.slice(0, axis).reduce((p, q) => p * q, 1);
          out = { t: tf.reshape(t, [outer, -1]), nhwc: false };
          break;
        }
        case 'Reshape': {
          const t = nchw(a);
          const shape = constants.get(n.inputs[1]).data.map((d, i) => (d === 0 ? t.shape[i] : d));
          out = { t: tf.reshape(t, shape), nhwc: false };
          break;
        }
        case 'Gemm': case 'MatMul': {
          const p = prepared.get(n);
          let y = tf.matMul(nchw(a), p.matrix);
          if (p.bias) y = tf.add(y, p.bias);
          counted += 2 * p.macs * y.shape[0];
          out = { t: y, nhwc: false };
          break;
        }
        default: throw new Error(`unreachable op ${n.op}`);
      }
      values.set(n.outputs[0], out);
    }
    flops ??= counted;
    return nchw(get(graph.outputs[0].name));
  }

  return {
    forward,
    variables,
    get flops() { return flops; },
    dispose() { owned.forEach((t) => t.dispose()); },
  };
}

/**
 * blindspot's `ce` objective on the peer: cross-entropy of softmax(logits) against `target`, and
 * its input gradient. Returns a function x (NCHW tensor) -> { value, grad } (tensors to dispose).
 */
export function crossEntropyGradient(tf, peer, target, classes) {
  const onehot = tf.cast(tf.oneHot(tf.tensor1d([target], 'int32'), classes), 'float32');
  const loss = (x) => tf.neg(tf.sum(tf.mul(tf.logSoftmax(peer.forward(x)), onehot)));
  return { run: tf.valueAndGrad(loss), dispose: () => onehot.dispose() };
}

/**
 * A TensorFlow.js training step of the peer: Adam (`lr`) on the mean softmax cross-entropy of a
 * batch, as blindspot's Trainer takes it. Returns step(images NCHW tensor, one-hot labels), which
 * resolves once the loss is read back (the step is done).
 */
export function adamStep(tf, peer, lr) {
  const optimizer = tf.train.adam(lr, 0.9, 0.999, 1e-8);
  return {
    async step(x, onehot) {
      const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(onehot, peer.forward(x)), true, peer.variables);
      const value = (await loss.data())[0];
      loss.dispose();
      return value;
    },
    dispose: () => optimizer.dispose(),
  };
}
