// The input image and the mask painted over it.
//
// The mask canvas has the image's own pixel size, whatever size it is shown at. A
// painted pixel (alpha >= 128) means "repaint", anything else "keep"; it is shown as
// a translucent overlay. It is sent in the project's convention: a PNG the size of the
// image, white (255) = repaint, black (0) = keep.

const PAINT = [255, 40, 100];
const UNDO_LIMIT = 40;
const PAINTED = 128;

export class MaskEditor {
  // els: {stage, frame, image, canvas, cursor, placeholder}; onChange() after every edit.
  constructor(els, onChange) {
    this.els = els;
    this.onChange = onChange;
    this.ctx = els.canvas.getContext("2d", { willReadFrequently: true });
    this.tool = "brush";
    this.size = 40;
    this.source = null; // what is sent as `image`: a data URI or an http(s) URL
    this.undoStack = [];
    this.redoStack = [];
    this.last = null;
    this.bindPointer();
    new ResizeObserver(() => this.layout()).observe(els.stage);
  }

  get hasImage() {
    return this.source !== null;
  }

  get width() {
    return this.els.canvas.width;
  }

  get height() {
    return this.els.canvas.height;
  }

  // Show `src` (data URI, blob or http(s) URL) as the input; the mask starts empty.
  async setImage(src) {
    const probe = new Image();
    await new Promise((resolve, reject) => {
      probe.onload = resolve;
      probe.onerror = () => reject(new Error("could not be loaded as an image"));
      probe.src = src;
    });
    const { image, canvas, frame, placeholder } = this.els;
    image.src = src;
    canvas.width = probe.naturalWidth;
    canvas.height = probe.naturalHeight;
    this.source = src;
    this.undoStack = [];
    this.redoStack = [];
    frame.hidden = false;
    placeholder.hidden = true;
    this.layout();
    this.onChange();
  }

  // Fit the image into the stage, keeping its aspect ratio; small images are scaled up.
  layout() {
    if (!this.hasImage) return;
    const { stage, frame } = this.els;
    const scale = Math.min(stage.clientWidth / this.width, stage.clientHeight / this.height);
    frame.style.width = `${Math.floor(this.width * scale)}px`;
    frame.style.height = `${Math.floor(this.height * scale)}px`;
    frame.classList.toggle("pixelated", scale >= 2);
  }

  toImagePoint(event) {
    const rect = this.els.canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * this.width) / rect.width,
      y: ((event.clientY - rect.top) * this.height) / rect.height,
      scale: rect.width / this.width,
    };
  }

  bindPointer() {
    const { canvas } = this.els;
    canvas.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || !this.hasImage) return;
      canvas.setPointerCapture(event.pointerId);
      this.remember();
      this.last = this.toImagePoint(event);
      this.stroke(this.last, this.last);
    });
    canvas.addEventListener("pointermove", (event) => {
      this.moveCursor(event);
      if (!this.last) return;
      const point = this.toImagePoint(event);
      this.stroke(this.last, point);
      this.last = point;
    });
    const end = () => {
      if (this.last) this.onChange();
      this.last = null;
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("pointerleave", () => (this.els.cursor.hidden = true));
  }

  moveCursor(event) {
    const { cursor, stage } = this.els;
    const rect = stage.getBoundingClientRect();
    cursor.hidden = false;
    cursor.style.width = cursor.style.height = `${this.size}px`;
    cursor.style.left = `${event.clientX - rect.left - this.size / 2}px`;
    cursor.style.top = `${event.clientY - rect.top - this.size / 2}px`;
  }

  stroke(from, to) {
    const ctx = this.ctx;
    ctx.globalCompositeOperation = this.tool === "eraser" ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = `rgb(${PAINT.join(",")})`;
    ctx.lineWidth = this.size / to.scale;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(to.x, to.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  pixels() {
    return this.ctx.getImageData(0, 0, this.width, this.height);
  }

  // Save the mask before an edit, for undo.
  remember() {
    this.undoStack.push(this.pixels());
    if (this.undoStack.length > UNDO_LIMIT) this.undoStack.shift();
    this.redoStack = [];
  }

  undo() {
    if (!this.undoStack.length) return;
    this.redoStack.push(this.pixels());
    this.ctx.putImageData(this.undoStack.pop(), 0, 0);
    this.onChange();
  }

  redo() {
    if (!this.redoStack.length) return;
    this.undoStack.push(this.pixels());
    this.ctx.putImageData(this.redoStack.pop(), 0, 0);
    this.onChange();
  }

  // Rewrite every pixel: paint(i, data) says whether pixel i is to be repainted.
  rewrite(paint) {
    const image = this.pixels();
    const { data } = image;
    for (let i = 0; i < data.length; i += 4) {
      const on = paint(i, data);
      data.set(PAINT, i);
      data[i + 3] = on ? 255 : 0;
    }
    this.ctx.putImageData(image, 0, 0);
    this.onChange();
  }

  clear() {
    this.remember();
    this.ctx.clearRect(0, 0, this.width, this.height);
    this.onChange();
  }

  invert() {
    this.remember();
    this.rewrite((i, data) => data[i + 3] < PAINTED);
  }

  // A mask image from a file: light (>= 128) repaints, dark keeps; scaled to the image.
  async loadMask(file) {
    const bitmap = await createImageBitmap(file);
    const scratch = new OffscreenCanvas(this.width, this.height);
    const ctx = scratch.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(bitmap, 0, 0, this.width, this.height);
    const source = ctx.getImageData(0, 0, this.width, this.height).data;
    this.remember();
    this.rewrite((i) => {
      const light = 0.299 * source[i] + 0.587 * source[i + 1] + 0.114 * source[i + 2];
      return (light * source[i + 3]) / 255 >= PAINTED;
    });
  }

  isEmpty() {
    const { data } = this.pixels();
    for (let i = 3; i < data.length; i += 4) if (data[i] >= PAINTED) return false;
    return true;
  }

  // The mask as sent: PNG data URI, image-sized, white = repaint, black = keep.
  toDataUri() {
    const source = this.pixels().data;
    const out = new ImageData(this.width, this.height);
    for (let i = 0; i < source.length; i += 4) {
      const value = source[i + 3] >= PAINTED ? 255 : 0;
      out.data.set([value, value, value, 255], i);
    }
    const canvas = document.createElement("canvas");
    canvas.width = this.width;
    canvas.height = this.height;
    canvas.getContext("2d").putImageData(out, 0, 0);
    return canvas.toDataURL("image/png");
  }
}
