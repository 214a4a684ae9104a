// digitlab's number mode: write a number on a wide canvas, see each digit found, its 28x28 input,
// its probabilities and, for the digit you click, the activations inside the network.
// Plain JavaScript, no build step; it only talks to this server (/api/predict).
"use strict";

(() => {
  const mount = document.getElementById("number-mode");
  const toDigit = document.getElementById("mode-digit");
  const toNumber = document.getElementById("mode-number");
  if (!mount || !toNumber) return;

  const W = 1200, H = 400;        // the canvas, in its own pixels
  const SEND_W = 600, SEND_H = 200;  // what is sent: half size, plenty for digits a canvas high
  const THROTTLE_MS = 250;

  // ---- the panel --------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  const pad = el("canvas", { id: "number-pad", width: W, height: H, tabindex: "0", role: "img",
    "aria-label": "Drawing area: write a number here, digits side by side" });
  const overlay = el("canvas", { id: "number-boxes", width: W, height: H, "aria-hidden": "true" });
  const text = el("output", { id: "number-text", class: "number-text", "aria-live": "polite", text: "?" });
  const sure = el("p", { id: "number-confidence", class: "number-confidence", text: "Write a number to start." });
  const digitsBox = el("div", { id: "number-digits", class: "number-digits" });
  const actsTitle = el("h3", { id: "number-acts-title", text: "Click a digit to see inside the network" });
  const acts = el("div", { id: "number-activations", class: "number-activations" });
  const clear = el("button", { type: "button", id: "number-clear", class: "button", text: "Clear" });

  mount.append(
    el("h2", { text: "Write a number" }),
    el("div", { class: "number-pad-wrap" }, pad, overlay),
    el("div", { class: "actions" }, clear),
    el("div", { class: "number-verdict" }, text, sure),
    digitsBox,
    el("section", { class: "number-inside" }, actsTitle, acts),
  );

  const ctx = pad.getContext("2d");
  const octx = overlay.getContext("2d");

  function showMode(number) {
    mount.hidden = !number;
    for (const main of document.querySelectorAll("main.layout")) main.hidden = number;
    toNumber.setAttribute("aria-pressed", String(number));
    if (toDigit) toDigit.setAttribute("aria-pressed", String(!number));
    if (number) pad.focus();
  }
  toNumber.addEventListener("click", () => showMode(true));
  if (toDigit) toDigit.addEventListener("click", () => showMode(false));

  // ---- drawing ----------------------------------------------------------------------------

  let drawing = false, hasInk = false, last = null;

  function clearPad() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, W, H);
    octx.clearRect(0, 0, W, H);
  }
  clearPad();

  function point(e) {
    const r = pad.getBoundingClientRect();
    return { x: (e.clientX - r.left) * (W / r.width), y: (e.clientY - r.top) * (H / r.height) };
  }

  function strokeTo(p) {
    ctx.strokeStyle = ctx.fillStyle = "#fff";
    ctx.lineWidth = H * 0.055;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    if (!last) {
      ctx.arc(p.x, p.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.moveTo(last.x, last.y);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
    }
    last = p;
  }

  pad.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 && e.pointerType === "mouse") return;
    e.preventDefault();
    pad.setPointerCapture(e.pointerId);
    drawing = true;
    last = null;
    hasInk = true;
    strokeTo(point(e));
  });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    e.preventDefault();
    const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [e];
    for (const ev of events.length ? events : [e]) strokeTo(point(ev));
    request(false);
  });
  function endStroke(e) {
    if (!drawing) return;
    drawing = false;
    last = null;
    if (pad.hasPointerCapture(e.pointerId)) pad.releasePointerCapture(e.pointerId);
    request(true);
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  clear.addEventListener("click", () => {
    generation += 1;
    hasInk = false;
    clearPad();
    text.textContent = "?";
    sure.textContent = "Write a number to start.";
    digitsBox.replaceChildren();
    acts.replaceChildren();
    mount.dataset.busy = "false";
    pad.focus();
  });
  pad.addEventListener("keydown", (e) => {
    if (e.key === "Escape" || e.key === "Delete" || e.key === "Backspace") clear.click();
  });

  // ---- the server: one request in flight, throttled, stale answers dropped ---------------

  let inFlight = false, dirty = false, timer = null, lastSent = 0, generation = 0;
  mount.dataset.busy = "false";

  function request(now) {
    if (!hasInk) return;
    dirty = true;
    mount.dataset.busy = "true";
    if (inFlight || (timer && !now)) return;
    if (timer) clearTimeout(timer);
    const wait = now ? 0 : Math.max(0, THROTTLE_MS - (performance.now() - lastSent));
    timer = setTimeout(() => { timer = null; send(); }, wait);
  }

  const small = el("canvas", { width: SEND_W, height: SEND_H });
  const sctx = small.getContext("2d");

  async function send() {
    if (!dirty || inFlight) return;
    dirty = false;
    inFlight = true;
    lastSent = performance.now();
    const gen = generation;
    try {
      sctx.imageSmoothingEnabled = true;
      sctx.imageSmoothingQuality = "high";
      sctx.drawImage(pad, 0, 0, SEND_W, SEND_H);
      const blob = await new Promise((resolve) => small.toBlob(resolve, "image/png"));
      const res = await fetch("/api/predict", { method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
      const body = await res.json().catch(() => ({}));
      if (gen !== generation) return;
      if (!res.ok) {
        text.textContent = "?";
        sure.textContent = body.detail || `HTTP ${res.status}`;
        sure.classList.add("error");
      } else {
        sure.classList.remove("error");
        show(body);
      }
    } catch (err) {
      if (gen === generation) sure.textContent = `Could not reach the server (${err.message}).`;
    } finally {
      inFlight = false;
      if (dirty && hasInk) request(!drawing);
      else if (!timer) mount.dataset.busy = "false";
    }
  }

  // ---- the answer --------------------------------------------------------------------------

  let shown = [];

  function show(r) {
    shown = r.digits || [];
    text.textContent = r.number === null || r.number === undefined ? "?" : r.number;
    const pct = Math.round(100 * (r.number_confidence || 0));
    sure.textContent = shown.length ? `${shown.length} digit${shown.length > 1 ? "s" : ""}, ${pct}% sure of the whole` : "No digit found.";
    drawBoxes(-1);
    digitsBox.replaceChildren(...shown.map(card));
  }

  function drawBoxes(selected) {
    octx.clearRect(0, 0, W, H);
    const fx = W / SEND_W, fy = H / SEND_H;
    shown.forEach((d, i) => {
      if (!d.box) return;
      const [x0, y0, x1, y1] = d.box;
      octx.lineWidth = i === selected ? 6 : 3;
      octx.strokeStyle = !d.is_digit ? "#e0604a" : i === selected ? "#ffd34d" : "#4ab0e0";
      octx.strokeRect(x0 * fx - 6, y0 * fy - 6, (x1 - x0) * fx + 12, (y1 - y0) * fy + 12);
      octx.fillStyle = octx.strokeStyle;
      octx.font = "bold 28px system-ui, sans-serif";
      octx.fillText(d.label === null ? "?" : d.label, x0 * fx - 4, Math.max(26, y0 * fy - 12));
    });
  }

  function card(d, i) {
    const seen = el("canvas", { width: 28, height: 28, class: "number-seen", role: "img",
      "aria-label": `The 28 by 28 input of digit ${i + 1}` });
    paintInput(seen, d.input);
    const bars = el("div", { class: "number-bars" });
    d.probabilities.forEach((p, k) => {
      const bar = el("span", { class: "number-bar" + (k === d.index ? " top" : ""), title: `${k}: ${(100 * p).toFixed(1)}%` });
      bar.style.height = `${Math.max(1, Math.round(48 * p))}px`;
      bars.append(el("span", { class: "number-bar-cell" }, bar, el("small", { text: String(k) })));
    });
    const b = el("button", { type: "button", class: "number-digit", "data-index": String(i),
      "aria-label": `Digit ${i + 1}: ${d.label}, show its activations` },
    el("strong", { class: "number-digit-label", text: d.label === null ? "?" : d.label }),
    seen,
    el("span", { class: "number-digit-sure", text: `${Math.round(100 * d.confidence)}%` }),
    bars);
    b.addEventListener("click", () => inspect(i));
    return b;
  }

  function paintInput(canvas, rows) {
    if (!rows) return;
    const g = canvas.getContext("2d");
    const img = g.createImageData(28, 28);
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) {
        const v = rows[y][x], j = 4 * (28 * y + x);
        img.data[j] = img.data[j + 1] = img.data[j + 2] = v;
        img.data[j + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
  }

  // ---- activations of one digit ----------------------------------------------------------

  async function inspect(i) {
    const d = shown[i];
    if (!d || !d.input) return;
    for (const c of digitsBox.children) c.classList.toggle("selected", c.dataset.index === String(i));
    drawBoxes(i);
    actsTitle.textContent = `Inside the network: digit ${i + 1} (${d.label === null ? "?" : d.label})`;
    const gen = generation;
    const res = await fetch("/api/predict?activations=1&single=1", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ pixels: d.input }),
    });
    if (!res.ok || gen !== generation) return;
    const body = await res.json();
    acts.replaceChildren(...Object.entries(body.activations || {}).map(([name, v]) => layer(name, v)));
  }

  function flat(v) {
    return Array.isArray(v) ? v.flat(Infinity) : [];
  }

  function layer(name, values) {
    const shape = [];
    for (let v = values; Array.isArray(v); v = v[0]) shape.push(v.length);
    const all = flat(values);
    const top = Math.max(1e-6, ...all);
    let canvas;
    if (shape.length === 3) {  // channels of feature maps: a grid of tiles
      const [c, h, w] = shape, n = Math.min(c, 32), cols = 8, rows = Math.ceil(n / cols);
      canvas = el("canvas", { width: cols * (w + 1), height: rows * (h + 1), class: "number-maps" });
      const g = canvas.getContext("2d"), img = g.createImageData(canvas.width, canvas.height);
      for (let k = 0; k < n; k++) {
        const ox = (k % cols) * (w + 1), oy = Math.floor(k / cols) * (h + 1);
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            const t = Math.max(0, values[k][y][x]) / top, j = 4 * ((oy + y) * canvas.width + ox + x);
            img.data[j] = Math.round(255 * t); img.data[j + 1] = Math.round(180 * t); img.data[j + 2] = Math.round(60 + 120 * t);
            img.data[j + 3] = 255;
          }
        }
      }
      g.putImageData(img, 0, 0);
    } else {  // a row of neurons
      canvas = el("canvas", { width: all.length, height: 1, class: "number-strip" });
      const g = canvas.getContext("2d"), img = g.createImageData(all.length, 1);
      all.forEach((v, x) => {
        const t = Math.max(0, v) / top;
        img.data[4 * x] = Math.round(255 * t); img.data[4 * x + 1] = Math.round(180 * t);
        img.data[4 * x + 2] = Math.round(60 + 120 * t); img.data[4 * x + 3] = 255;
      });
      g.putImageData(img, 0, 0);
    }
    return el("div", { class: "number-layer" }, el("span", { text: `${name} · ${shape.join("×")} neurons` }), canvas);
  }
})();
