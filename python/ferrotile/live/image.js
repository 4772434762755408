// A 2-D frame on a canvas: value -> colour through a 256-entry table between two limits, and the
// frame's histogram with those limits marked.

// Colour stops of matplotlib's perceptually uniform "viridis" (sampled at 0, 1/8, ..., 1),
// interpolated linearly in RGB: close enough to the full table for a preview.
const VIRIDIS_STOPS = [
  [68, 1, 84], [71, 44, 122], [59, 82, 139], [44, 114, 142], [33, 145, 140],
  [40, 174, 128], [94, 201, 98], [173, 220, 48], [253, 231, 37],
];

function table(color) {
  const lut = new Uint8ClampedArray(256 * 4);
  for (let i = 0; i < 256; i++) {
    const [r, g, b] = color(i / 255);
    lut.set([r, g, b, 255], i * 4);
  }
  return lut;
}

function interpolate(stops) {
  return (t) => {
    const x = t * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2);
    const f = x - i;
    return stops[i].map((c, k) => Math.round(c + (stops[i + 1][k] - c) * f));
  };
}

export const COLORMAPS = {
  gray: table((t) => [Math.round(t * 255), Math.round(t * 255), Math.round(t * 255)]),
  viridis: table(interpolate(VIRIDIS_STOPS)),
};

// Smallest and largest finite values.
export function range(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : [0, 1];
}

// Draw `frame` ({values, width, height}) on `canvas`: `lo` maps to the table's first colour,
// `hi` to its last (value v -> index round((v - lo) / (hi - lo) * 255), clipped); NaN is black.
export function drawImage(canvas, frame, lut, lo, hi) {
  const { values, width, height } = frame;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  const pixels = image.data;
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  for (let i = 0; i < width * height; i++) {
    const v = values[i];
    let index = Math.round((v - lo) * scale);
    index = index < 0 ? 0 : index > 255 ? 255 : index;
    const at = i * 4;
    if (v !== v) {
      pixels[at + 3] = 255;  // NaN: black
      continue;
    }
    pixels[at] = lut[index * 4];
    pixels[at + 1] = lut[index * 4 + 1];
    pixels[at + 2] = lut[index * 4 + 2];
    pixels[at + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

// A histogram of the frame over its own range (log-scaled counts), with [lo, hi] marked.
export function drawHistogram(canvas, values, lo, hi) {
  const bins = 128;
  const counts = new Uint32Array(bins);
  const [min, max] = range(values);
  const width = max > min ? max - min : 1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v !== v) continue;
    counts[Math.min(bins - 1, Math.floor(((v - min) / width) * bins))]++;
  }
  const context = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  context.clearRect(0, 0, w, h);
  const top = Math.log1p(Math.max(...counts));
  context.fillStyle = "#4a6fa5";
  for (let b = 0; b < bins; b++) {
    const bar = top > 0 ? (Math.log1p(counts[b]) / top) * (h - 14) : 0;
    context.fillRect((b * w) / bins, h - 14 - bar, w / bins, bar);
  }
  context.fillStyle = "#c0392b";
  for (const limit of [lo, hi]) {
    const x = ((limit - min) / width) * w;
    if (x >= 0 && x <= w) context.fillRect(Math.min(x, w - 2), 0, 2, h - 14);
  }
  context.fillStyle = "#333";
  context.font = "11px system-ui, sans-serif";
  context.textBaseline = "bottom";
  context.fillText(format(min), 2, h);
  const label = format(max);
  context.fillText(label, w - context.measureText(label).width - 2, h);
}

export function format(value) {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3 ? value.toExponential(3)
    : value.toPrecision(5);
}
