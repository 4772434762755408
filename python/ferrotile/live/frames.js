// Array payloads to numbers: NumPy dtype strings ("<u2", ">f8", "|b1") and Tiled's data_type
// objects, raw bytes to typed arrays, and the newest 2-D frame of an N-D payload.

const ARRAYS = {
  i1: Int8Array, i2: Int16Array, i4: Int32Array, i8: BigInt64Array,
  u1: Uint8Array, u2: Uint16Array, u4: Uint32Array, u8: BigUint64Array,
  f4: Float32Array, f8: Float64Array, b1: Uint8Array,
};
const GETTERS = {
  i1: "getInt8", i2: "getInt16", i4: "getInt32", i8: "getBigInt64",
  u1: "getUint8", u2: "getUint16", u4: "getUint32", u8: "getBigUint64",
  f4: "getFloat32", f8: "getFloat64", b1: "getUint8",
};
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// "<u2" or {endianness, kind, itemsize} -> {code: "u2", little: bool}
export function parseDtype(dtype) {
  if (typeof dtype === "object" && dtype !== null) {
    if (dtype.fields) throw new Error("structured dtypes are not shown");
    const little = dtype.endianness !== "big";
    return { code: `${dtype.kind}${dtype.itemsize}`, little };
  }
  const match = /^([<>|=]?)([biuf])(\d+)$/.exec(String(dtype));
  if (!match) throw new Error(`dtype ${dtype} is not shown`);
  return { code: `${match[2]}${match[3]}`, little: match[1] !== ">" };
}

// Raw bytes (a Uint8Array) -> a typed array of numbers (copied when unaligned or byte-swapped).
export function toNumbers(bytes, dtype) {
  const { code, little } = parseDtype(dtype);
  const Type = ARRAYS[code];
  if (!Type) throw new Error(`dtype ${code} is not shown`);
  const size = Type.BYTES_PER_ELEMENT;
  const count = Math.floor(bytes.byteLength / size);
  let values;
  if (little === LITTLE) {
    const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
    values = new Type(aligned.buffer, aligned.byteOffset, count);
  } else {
    values = new Type(count);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const get = GETTERS[code];
    for (let i = 0; i < count; i++) values[i] = view[get](i * size, little);
  }
  // 64-bit integers: Numbers for drawing (exact below 2**53).
  return size === 8 && code !== "f8" ? Float64Array.from(values, Number) : values;
}

// The newest 2-D frame of a payload of `shape` (leading axes: its last index).
export function lastFrame(values, shape) {
  if (shape.length < 2) throw new Error("not an image");
  const height = shape[shape.length - 2];
  const width = shape[shape.length - 1];
  const start = values.length - height * width;
  return { values: values.subarray(Math.max(0, start)), width, height };
}

// Where a partial write of a 2-D array starts: [row, column] from the message's `offset`, or
// from its `block` index and the array's chunks; null for a whole frame.
export function regionOrigin(message, chunks) {
  if (message.offset) return message.offset.slice(-2);
  if (message.block && chunks) {
    return message.block.slice(-2).map((index, axis) => {
      const sizes = chunks[chunks.length - 2 + axis];
      return sizes.slice(0, index).reduce((a, b) => a + b, 0);
    });
  }
  return null;
}

// `region` (a frame) written into a copy of `base` (a frame) at [row, column].
export function paste(base, region, [row, column]) {
  const values = Float64Array.from(base.values);
  for (let r = 0; r < region.height && row + r < base.height; r++) {
    for (let c = 0; c < region.width && column + c < base.width; c++) {
      values[(row + r) * base.width + column + c] = region.values[r * region.width + c];
    }
  }
  return { values, width: base.width, height: base.height };
}

// Nested JSON lists -> flat numbers (row-major).
export function flatten(nested) {
  return Array.isArray(nested) ? nested.flat(Infinity).map(Number) : [Number(nested)];
}
