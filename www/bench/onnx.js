// A minimal ONNX reader for the benchmark: the protobuf wire format, just the fields a graph of
// nodes, initialisers and shapes needs. The peer (TensorFlow.js) gets blindspot's exact weights.

/** A cursor over protobuf bytes. */
class Reader {
  constructor(bytes, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = start;
    this.end = end;
  }

  /** A varint as a BigInt (int64 fields may be negative: ten bytes). */
  varint() {
    let value = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const byte = this.bytes[this.pos++];
      value |= BigInt(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
      shift += 7n;
    }
  }

  int() { return Number(BigInt.asIntN(64, this.varint())); }

  /** Each field as [number, wire type, value]; a length-delimited value is a sub-Reader. */
  *fields() {
    while (this.pos < this.end) {
      const key = Number(this.varint());
      const field = key >>> 3;
      const wire = key & 7;
      if (wire === 0) yield [field, wire, this.varint()];
      else if (wire === 1) { yield [field, wire, this.view.getFloat64(this.pos, true)]; this.pos += 8; }
      else if (wire === 5) { yield [field, wire, this.view.getFloat32(this.pos, true)]; this.pos += 4; }
      else if (wire === 2) {
        const length = Number(this.varint());
        if (this.pos + length > this.end) throw new Error('truncated field');
        yield [field, wire, new Reader(this.bytes, this.pos, this.pos + length)];
        this.pos += length;
      } else throw new Error(`unsupported wire type ${wire}`);
    }
  }

  string() { return new TextDecoder().decode(this.bytes.subarray(this.pos, this.end)); }
  raw() { return this.bytes.subarray(this.pos, this.end); }
}

/** Repeated int64 values, packed (wire 2) or not (wire 0). */
function ints(wire, value, into) {
  if (wire === 0) into.push(Number(BigInt.asIntN(64, value)));
  else while (value.pos < value.end) into.push(value.int());
}

/** Repeated floats, packed or not. */
function floats(wire, value, into) {
  if (wire === 5) into.push(value);
  else for (; value.pos < value.end; value.pos += 4) into.push(value.view.getFloat32(value.pos, true));
}

const FLOAT = 1;
const INT32 = 6;
const INT64 = 7;

/** A TensorProto as { name, dims, data } with data a Float32Array (or int numbers for ints). */
function tensor(reader) {
  const t = { name: '', dims: [], type: FLOAT, floats: [], ints: [], raw: null };
  for (const [field, wire, value] of reader.fields()) {
    if (field === 1) ints(wire, value, t.dims);
    else if (field === 2) t.type = Number(value);
    else if (field === 4) floats(wire, value, t.floats);
    else if (field === 5 || field === 7) ints(wire, value, t.ints);
    else if (field === 8) t.name = value.string();
    else if (field === 9) t.raw = value.raw();
  }
  const count = t.dims.reduce((a, b) => a * b, 1);
  let data;
  if (t.type === FLOAT) {
    data = t.raw ? new Float32Array(t.raw.slice().buffer) : Float32Array.from(t.floats);
  } else if (t.type === INT64 || t.type === INT32) {
    if (t.raw) {
      const view = new DataView(t.raw.buffer, t.raw.byteOffset, t.raw.byteLength);
      const size = t.type === INT64 ? 8 : 4;
      data = Array.from({ length: t.raw.byteLength / size },
        (_, i) => (size === 8 ? Number(view.getBigInt64(i * 8, true)) : view.getInt32(i * 4, true)));
    } else data = t.ints;
  } else throw new Error(`tensor ${t.name}: data type ${t.type} is not read by the benchmark`);
  if (data.length !== count) throw new Error(`tensor ${t.name}: ${data.length} values for dims [${t.dims}]`);
  return { name: t.name, dims: t.dims, data };
}

function attribute(reader) {
  const a = { name: '', value: undefined };
  const list = [];
  for (const [field, wire, value] of reader.fields()) {
    if (field === 1) a.name = value.string();
    else if (field === 2) a.value = value;
    else if (field === 3) a.value = Number(BigInt.asIntN(64, value));
    else if (field === 4) a.value = value.string();
    else if (field === 5) a.value = tensor(value);
    else if (field === 7) { floats(wire, value, list); a.value = list; }
    else if (field === 8) { ints(wire, value, list); a.value = list; }
  }
  return a;
}

function node(reader) {
  const n = { inputs: [], outputs: [], name: '', op: '', attributes: {} };
  for (const [field, , value] of reader.fields()) {
    if (field === 1) n.inputs.push(value.string());
    else if (field === 2) n.outputs.push(value.string());
    else if (field === 3) n.name = value.string();
    else if (field === 4) n.op = value.string();
    else if (field === 5) { const a = attribute(value); n.attributes[a.name] = a.value; }
  }
  return n;
}

/** A graph input's name and dims (0 for a symbolic dimension). */
function valueInfo(reader) {
  const info = { name: '', dims: [] };
  for (const [field, , value] of reader.fields()) {
    if (field === 1) info.name = value.string();
    if (field !== 2) continue;
    for (const [f1, , tensorType] of value.fields()) {
      if (f1 !== 1) continue;
      for (const [f2, , shape] of tensorType.fields()) {
        if (f2 !== 2) continue;
        for (const [f3, , dim] of shape.fields()) {
          if (f3 !== 1) continue;
          let size = 0;
          for (const [f4, , v] of dim.fields()) if (f4 === 1) size = Number(v);
          info.dims.push(size);
        }
      }
    }
  }
  return info;
}

/**
 * Reads an ONNX file: { nodes, initializers: Map(name -> tensor), inputs, outputs } with the
 * graph inputs that are not initialisers.
 */
export function readOnnx(bytes) {
  const model = new Reader(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  for (const [field, , graph] of model.fields()) {
    if (field !== 7) continue;
    const g = { nodes: [], initializers: new Map(), inputs: [], outputs: [] };
    for (const [f, , value] of graph.fields()) {
      if (f === 1) g.nodes.push(node(value));
      else if (f === 5) { const t = tensor(value); g.initializers.set(t.name, t); }
      else if (f === 11) g.inputs.push(valueInfo(value));
      else if (f === 12) g.outputs.push(valueInfo(value));
    }
    g.inputs = g.inputs.filter((i) => !g.initializers.has(i.name));
    return g;
  }
  throw new Error('no graph in this ONNX file');
}
