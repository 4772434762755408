// One node as it streams, through WS /api/v1/stream/multi: the newest frame of an array on a
// canvas (colormap, contrast, histogram), or the newest rows of a 1-D array or a table as a
// line plot. The server sends at most `max_fps` frames a second (newest wins), binned to about
// the canvas size, so a big detector at a high rate arrives as a few small frames; the page
// draws only the newest frame it holds, once per animation frame.

import { apiKey, showError } from "./auth.js";
import { decode } from "./msgpack.js";
import { flatten, lastFrame, paste, regionOrigin, toNumbers } from "./frames.js";
import { COLORMAPS, drawHistogram, drawImage, format, range } from "./image.js";
import { Rows, drawPlot } from "./plot.js";

// The most pixels a frame is sent with (the server bins it down to about this).
const MAX_PIXELS = 512 * 512;
const MAX_WIDTH = 1024;
const RECONNECT_MS = 1000;
// Close codes after which reconnecting cannot help.
const FINAL_CLOSES = new Set([1000, 1008, 4001, 4003]);

const $ = (id) => document.getElementById(id);

export function showViewer(root, path, node, clock) {
  const kind = viewKind(node);
  if (!kind) {
    showError(`A ${node.structure_family} node has no live view.`);
    return;
  }
  $("viewer").hidden = false;
  new Viewer(root, path, node, clock, kind).connect();
}

function viewKind(node) {
  if (node.structure_family === "table") return "plot";
  if (node.structure_family !== "array" || !node.shape) return null;
  return node.shape.length >= 2 ? "image" : "plot";
}

// The bin factor that brings a (height, width) frame down to about MAX_PIXELS and MAX_WIDTH.
export function chooseBin(shape) {
  const height = shape[shape.length - 2];
  const width = shape[shape.length - 1];
  return Math.max(
    1,
    Math.ceil(width / MAX_WIDTH),
    Math.ceil(Math.sqrt((width * height) / MAX_PIXELS)),
  );
}

class Viewer {
  constructor(root, path, node, clock, kind) {
    this.root = root;
    this.path = path;
    this.node = node;
    this.clock = clock;
    this.kind = kind;
    this.dtype = node.dtype;  // the schema message repeats it; a view may change it
    this.subscriptions = 0;
    this.lastSequence = node.sequence || 0;
    this.pending = null;  // the newest frame not drawn yet
    this.shown = null;  // the frame on the canvas
    this.draws = [];  // times of recent draws (frames/s)
    this.skipped = 0;
    this.received = 0;
    this.paused = false;
    this.rows = new Rows();
    for (const id of ["image", "histogram"]) $(id).hidden = kind !== "image";
    $("plot").hidden = kind !== "plot";
    for (const id of ["colormap", "auto", "vmin", "vmax", "slice", "max-fps"]) {
      $(id).closest("label").hidden = kind !== "image";
    }
    $("pause").onclick = () => this.togglePause();
    for (const id of ["colormap", "auto", "vmin", "vmax"]) {
      $(id).onchange = () => this.redraw();
    }
    for (const id of ["vmin", "vmax"]) $(id).oninput = () => this.redraw();  // while typing
    for (const id of ["slice", "max-fps"]) $(id).onchange = () => this.resubscribe();
    setInterval(() => this.showRates(), 500);
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    // Tables come as JSON ({column: [values]}: no Arrow decoder here), arrays as msgpack.
    const envelope = this.kind === "plot" && this.node.structure_family === "table"
      ? "json" : "msgpack";
    const url = `${scheme}://${location.host}${this.root}/api/v1/stream/multi`
      + `?envelope_format=${envelope}`;
    this.status("connecting");
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      const key = apiKey();
      socket.send(JSON.stringify(key ? { type: "auth", api_key: key } : { type: "auth" }));
    };
    socket.onmessage = (event) => {
      const message = typeof event.data === "string"
        ? JSON.parse(event.data) : decode(event.data);
      this.receive(message);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      if (FINAL_CLOSES.has(event.code)) {
        this.status("closed");
        showError(`The server closed the stream (${event.code}): ${event.reason || "no reason"}`);
        return;
      }
      this.status("reconnecting");
      setTimeout(() => this.connect(), RECONNECT_MS);
    };
  }

  subscribe() {
    this.id = `view-${++this.subscriptions}`;
    const request = { type: "subscribe", id: this.id, path: this.path };
    // Start at the newest message (an idle stream still shows its last frame); a plot replays
    // the rows it can keep.
    if (this.lastSequence > 0) {
      request.start = this.kind === "plot"
        ? Math.max(1, this.lastSequence - 200) : this.lastSequence;
    }
    // A viewer that falls behind skips to the newest message instead of being closed; the
    // messages it missed are reported (notify_gaps) and counted with the skipped frames.
    request.on_overflow = "latest";
    request.notify_gaps = true;
    if (this.kind === "image") {
      // Rows of a plot are all wanted; frames of an image only as fast as they can be seen.
      request.max_fps = Number($("max-fps").value) || 30;
      const bin = chooseBin(this.node.shape);
      this.binned = bin > 1;
      if (this.binned) {
        request.bin = `${bin},mean`;
        request.dtype = "<f4";  // the means (float64) in half the bytes
      }
      const slice = $("slice").value.trim();
      if (slice) request.slice = slice;
    }
    this.socket.send(JSON.stringify(request));
  }

  resubscribe() {
    if (this.socket.readyState !== WebSocket.OPEN || !this.id) return;
    this.socket.send(JSON.stringify({ type: "unsubscribe", id: this.id }));
    showError(null);
    this.subscribe();
  }

  receive(message) {
    switch (message.type) {
      case "connection_ack":
        this.status(this.paused ? "paused" : "live");
        this.subscribe();
        return;
      case "ping":
        this.socket.send(JSON.stringify({ type: "pong" }));
        return;
      case "pong":
        return;
      case "error":
        showError(message.detail || "error");
        return;
      case "complete":
        if (message.id === this.id) {
          this.status("ended");
          if (message.code !== 1000) showError(`The stream ended: ${message.reason || message.code}`);
        }
        return;
      case "data":
        if (message.id === this.id) this.update(unwrap(message.message));
        return;
      default:
        if (message.id === this.id) this.notice(message);
    }
  }

  update(message) {
    if (message.type === "array-data" || message.type === "table-data") {
      $("newest").textContent = String(message.sequence);
      $("received").textContent = String(++this.received);
    }
    switch (message.type) {
      case "array-schema":
      case "ragged-schema":
        this.dtype = message.dtype ?? message.data_type ?? this.dtype;
        return;
      case "array-data":
        this.lastSequence = message.sequence;
        this.skipped += message.skipped || 0;
        if (this.kind === "image") this.takeFrame(message);
        else this.takeRows(message);
        return;
      case "table-data":
        this.lastSequence = message.sequence;
        this.skipped += message.skipped || 0;
        this.rows.add(message.payload, null, !message.append);
        this.pending = { sequence: message.sequence, timestamp: message.timestamp };
        this.schedule();
        return;
      default:
        this.notice(message);
    }
  }

  // Gaps and skipped counts (notices), shown with the frames skipped by max_fps.
  notice(message) {
    if (message.type === "stream-gap") this.skipped += message.count || 0;
    if (message.type === "view-error") showError(`Frame ${message.sequence}: ${message.detail}`);
  }

  takeFrame(message) {
    const shape = message.shape;
    const values = message.payload instanceof Uint8Array
      ? toNumbers(message.payload, message.dtype ?? this.dtype)
      : Float64Array.from(flatten(message.payload));
    let frame = lastFrame(values, shape.length >= 2 ? shape : [1, ...shape]);
    // A region of a 2-D array (PATCH with offset, PUT of a block) goes into the whole frame.
    const [height, width] = this.node.shape.slice(-2);
    const origin = regionOrigin(message, this.node.chunks);
    const partial = frame.height !== height || frame.width !== width;
    if (this.node.shape.length === 2 && origin && partial && !this.binned) {
      const base = this.whole ?? { values: new Float64Array(height * width), height, width };
      frame = paste(base, frame, origin);
    }
    this.whole = frame;
    this.pending = { ...frame, sequence: message.sequence, timestamp: message.timestamp };
    this.schedule();
  }

  takeRows(message) {
    const values = message.payload instanceof Uint8Array
      ? Array.from(toNumbers(message.payload, message.dtype ?? this.dtype))
      : flatten(message.payload);
    const offset = message.offset ? message.offset[0] : null;
    this.rows.add({ value: values }, offset ?? 0, offset == null);
    this.pending = { sequence: message.sequence, timestamp: message.timestamp };
    this.schedule();
  }

  schedule() {
    if (this.paused || this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      if (!this.paused && this.pending) this.draw(this.pending);
    });
  }

  draw(frame) {
    this.pending = null;
    this.shown = frame;
    if (this.kind === "image") {
      this.paint(frame);
    } else {
      drawPlot($("plot"), this.rows);
      const { x, columns } = this.rows;
      $("shape").textContent = x.length
        ? `rows ${x[0]}-${x[x.length - 1]}, ${columns.size} column${columns.size === 1 ? "" : "s"}`
        : "no rows";
    }
    const now = performance.now();
    this.draws.push(now);
    $("frame").textContent = String(frame.sequence);
    $("lag").textContent = this.lag(frame.timestamp);
    $("skipped").textContent = String(this.skipped);
  }

  // Draw the frame on the canvas with the chosen colormap and contrast.
  paint(frame) {
    let lo;
    let hi;
    if ($("auto").checked) {
      [lo, hi] = range(frame.values);
      $("vmin").value = format(lo);
      $("vmax").value = format(hi);
    } else {
      lo = Number($("vmin").value);
      hi = Number($("vmax").value);
    }
    $("vmin").disabled = $("vmax").disabled = $("auto").checked;
    drawImage($("image"), frame, COLORMAPS[$("colormap").value], lo, hi);
    drawHistogram($("histogram"), frame.values, lo, hi);
    $("shape").textContent = `${frame.height} × ${frame.width}`;
  }

  redraw() {
    if (this.kind === "image" && this.shown) this.paint(this.shown);
  }

  togglePause() {
    this.paused = !this.paused;
    $("pause").textContent = this.paused ? "Resume" : "Pause";
    this.status(this.paused ? "paused" : "live");
    if (!this.paused && this.pending) this.schedule();
  }

  showRates() {
    const now = performance.now();
    while (this.draws.length && this.draws[0] < now - 1000) this.draws.shift();
    $("fps").textContent = String(this.draws.length);
  }

  // How long ago the server stamped the frame (its clock, from the listing's answer).
  lag(timestamp) {
    const match = /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+(?:\.\d+)?)$/.exec(timestamp || "");
    if (!match) return "-";
    const [, y, mo, d, h, mi, s] = match.map(Number);
    const stamped = Date.UTC(y, mo - 1, d, h, mi, 0) / 1000 + s - this.clock.utcOffset;
    const now = Date.now() / 1000 + this.clock.skew;
    return `${Math.max(0, Math.round((now - stamped) * 1000))} ms`;
  }

  status(text) {
    $("status").textContent = text;
    $("status").dataset.state = text;
  }
}

// A data message's payload: a map, or (if the server wraps encoded bytes) msgpack bytes.
function unwrap(message) {
  return message instanceof Uint8Array ? decode(message) : message;
}
