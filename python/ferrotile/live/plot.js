// A line plot of the newest rows of a 1-D array or a table: one line per numeric column, the
// x axis the row index, both axes scaled to what is kept (at most MAX_ROWS rows).

export const MAX_ROWS = 2000;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

export class Rows {
  constructor() {
    this.x = [];
    this.columns = new Map();  // name -> values, aligned with x
    this.next = 0;  // the row index after the last one kept
  }

  // Rows `columns` ({name: numbers}) starting at row `start` (null: after the last ones);
  // `replace` drops what was kept first (a whole new array or partition).
  add(columns, start, replace) {
    if (replace) {
      this.x = [];
      this.columns = new Map();
      this.next = 0;
    }
    const names = Object.keys(columns).filter((name) => columns[name].every(isNumber));
    const total = names.length ? columns[names[0]].length : 0;
    const length = Math.min(total, MAX_ROWS);  // only the newest rows of a long update
    const first = (start ?? this.next) + total - length;
    for (let i = 0; i < length; i++) this.x.push(first + i);
    for (const name of names) {
      if (!this.columns.has(name)) this.columns.set(name, new Array(this.x.length - length).fill(NaN));
      this.columns.get(name).push(...columns[name].slice(total - length).map(toNumber));
    }
    for (const [name, values] of this.columns) {
      if (!names.includes(name)) values.push(...new Array(length).fill(NaN));
    }
    this.next = first + length;
    const excess = this.x.length - MAX_ROWS;
    if (excess > 0) {
      this.x.splice(0, excess);
      for (const values of this.columns.values()) values.splice(0, excess);
    }
  }
}

function toNumber(v) {
  return v === null ? NaN : Number(v);
}

function isNumber(v) {
  return typeof v === "number" || typeof v === "boolean" || v === null;
}

export function drawPlot(canvas, rows) {
  const context = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  const pad = { left: 56, right: 8, top: 8, bottom: 22 };
  context.clearRect(0, 0, w, h);
  if (!rows.x.length) return;
  let lo = Infinity;
  let hi = -Infinity;
  for (const values of rows.columns.values()) {
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (!(lo <= hi)) [lo, hi] = [0, 1];
  if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
  const x0 = rows.x[0];
  const x1 = Math.max(rows.x[rows.x.length - 1], x0 + 1);
  const sx = (x) => pad.left + ((x - x0) / (x1 - x0)) * (w - pad.left - pad.right);
  const sy = (y) => h - pad.bottom - ((y - lo) / (hi - lo)) * (h - pad.top - pad.bottom);
  context.strokeStyle = "#999";
  context.lineWidth = 1;
  context.strokeRect(pad.left, pad.top, w - pad.left - pad.right, h - pad.top - pad.bottom);
  context.fillStyle = "#333";
  context.font = "11px system-ui, sans-serif";
  context.fillText(String(Number(hi.toPrecision(4))), 2, pad.top + 10);
  context.fillText(String(Number(lo.toPrecision(4))), 2, h - pad.bottom);
  context.fillText(String(x0), pad.left, h - 6);
  const last = String(rows.x[rows.x.length - 1]);
  context.fillText(last, w - pad.right - context.measureText(last).width, h - 6);
  let color = 0;
  for (const [name, values] of rows.columns) {
    context.strokeStyle = COLORS[color % COLORS.length];
    context.lineWidth = 2;
    context.beginPath();
    let drawing = false;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v !== v) {
        drawing = false;
        continue;
      }
      if (drawing) context.lineTo(sx(rows.x[i]), sy(v));
      else context.moveTo(sx(rows.x[i]), sy(v));
      drawing = true;
    }
    context.stroke();
    context.fillStyle = context.strokeStyle;
    context.fillText(name, pad.left + 6 + color * 90, pad.top + 12);
    color++;
  }
}
