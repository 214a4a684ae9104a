// digitlab's drawing page: plain JavaScript, no build step, no network beyond this server.
"use strict";

(() => {
  const THROTTLE_MS = 100;      // at most one request per 100 ms while drawing
  const SEND_SIZE = 140;        // the drawing is sent as a 140x140 PNG: plenty for a 28x28 input, and cheap
  const INK = "#ffffff";        // white ink on black, like MNIST
  const PAPER = "#000000";

  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const padHint = $("pad-hint");
  const prediction = $("prediction");
  const confidence = $("confidence");
  const statusLine = $("status");
  const bars = $("bars");
  const seen = $("seen");
  const activationsBox = $("activations");

  let model = null;             // /api/model
  let labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
  let barEls = [];

  // ---- model info ---------------------------------------------------------------------------

  async function loadModel() {
    try {
      const res = await fetch("/api/model");
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      model = await res.json();
      labels = model.labels;
      $("model-name").textContent = model.name + (model.dataset ? ` · ${model.dataset}` : "");
      $("model-accuracy").textContent = model.test_accuracy == null
        ? "not measured" : `${(100 * model.test_accuracy).toFixed(2)} %`;
      $("model-params").textContent = model.parameters == null ? "?" : model.parameters.toLocaleString("en-US");
      showPipeline(model.architecture);
      if (!model.activation_layers.length) {
        activationsBox.innerHTML = "<p class='placeholder'>This model file does not expose its hidden layers.</p>";
      }
    } catch (err) {
      $("model-name").textContent = "unavailable";
      setStatus(`Could not reach the server (${err.message}).`, true);
    }
    buildBars();
  }

  // "784 inputs -> dense 128 · ReLU -> ... -> 10 · softmax", from the architecture rows.
  function showPipeline(rows) {
    const box = $("pipeline");
    if (!rows || !rows.length) { box.hidden = true; return; }
    const steps = [{ name: "input", text: "input 28×28 = 784 pixels", cls: "in" }];
    const shape = (s) => {
      const d = s.slice(1);
      return d.length === 3 ? `${d[2]} maps ${d[0]}×${d[1]}` : `${d[d.length - 1]}`;
    };
    const KINDS = { Linear: "dense", Conv2d: "conv", MaxPool2d: "pool" };
    rows.forEach((r, i) => {
      if (/^(ReLU|Sigmoid|Tanh|GELU)$/.test(r.kind)) {
        if (steps.length > 1) steps[steps.length - 1].act = r.kind;
        return;
      }
      if (!(r.kind in KINDS)) return;  // flatten, dropout, batch norm: no new neurons
      const last = i === rows.length - 1;
      steps.push({ name: r.name, text: `${KINDS[r.kind]} ${shape(r.output_shape)}`, cls: last ? "out" : "",
                   act: last ? "softmax" : null });
    });
    box.textContent = "";
    steps.forEach((st, i) => {
      if (i) {
        const arrow = document.createElement("span");
        arrow.className = "arrow";
        arrow.textContent = "→";
        arrow.setAttribute("aria-hidden", "true");
        box.append(arrow);
      }
      const chip = document.createElement("span");
      chip.className = "chip " + st.cls;
      chip.title = st.name;
      chip.textContent = st.text + (st.act ? ` · ${st.act}` : "");
      box.append(chip);
    });
  }

  function buildBars() {
    bars.textContent = "";
    barEls = labels.map((name, i) => {
      const col = document.createElement("div");
      col.className = "bar-col";
      const pct = document.createElement("span");
      pct.className = "bar-pct";
      pct.textContent = "";
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.id = `bar-${i}`;
      bar.dataset.label = String(i);
      bar.title = name;
      bar.append(pct);
      col.append(bar);
      bars.append(col);
      return { col, pct, bar };
    });
    const names = document.createElement("div");
    names.className = "bar-labels" + (labels.some((s) => s.length > 2) ? " small" : "");
    for (const name of labels) {
      const s = document.createElement("span");
      s.textContent = name;
      s.title = name;
      names.append(s);
    }
    $("chart").querySelector(".bar-labels")?.remove();
    $("chart").append(names);
  }

  // ---- drawing --------------------------------------------------------------------------------

  let drawing = false;
  let hasInk = false;
  let last = null;

  function clearPad() {
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, pad.width, pad.height);
  }

  function point(e) {
    const r = pad.getBoundingClientRect();
    return { x: (e.clientX - r.left) * (pad.width / r.width), y: (e.clientY - r.top) * (pad.height / r.height) };
  }

  function strokeTo(p) {
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    ctx.lineWidth = pad.width * 0.065;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    if (!last) {
      ctx.beginPath();
      ctx.arc(p.x, p.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.beginPath();
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
    if (!hasInk) lastSent = performance.now();  // first answer once the stroke has some length
    strokeTo(point(e));
    inked();
  });

  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    e.preventDefault();
    const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [e];
    for (const ev of events.length ? events : [e]) strokeTo(point(ev));
    inked();
  });

  function endStroke(e) {
    if (!drawing) return;
    drawing = false;
    last = null;
    if (pad.hasPointerCapture(e.pointerId)) pad.releasePointerCapture(e.pointerId);
    requestPrediction(true);
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  function inked() {
    if (!hasInk) {
      hasInk = true;
      padHint.classList.add("hidden");
    }
    requestPrediction(false);
  }

  $("clear").addEventListener("click", () => {
    generation += 1;
    dirty = false;
    hasInk = false;
    if (timer) { clearTimeout(timer); timer = null; }
    setBusy();
    clearPad();
    padHint.classList.remove("hidden");
    showIdle("Draw something to start.");
    pad.focus();
  });

  pad.addEventListener("keydown", (e) => {
    if (e.key === "Escape" || e.key === "Delete" || e.key === "Backspace") $("clear").click();
  });

  // ---- talking to the server: throttled, one request in flight, stale answers dropped --------

  let inFlight = false;
  let dirty = false;
  let timer = null;
  let lastSent = 0;
  let generation = 0;

  function setBusy() {
    document.body.dataset.busy = inFlight || dirty || timer ? "true" : "false";
  }

  function requestPrediction(now) {
    if (!hasInk) return;
    dirty = true;
    document.body.dataset.busy = "true";
    if (inFlight) return;              // sent again when the current one returns
    if (timer) {
      if (!now) return;
      clearTimeout(timer);
      timer = null;
    }
    const wait = now ? 0 : Math.max(0, THROTTLE_MS - (performance.now() - lastSent));
    timer = setTimeout(() => { timer = null; sendDrawing(); }, wait);
  }

  const small = document.createElement("canvas");
  small.width = small.height = SEND_SIZE;
  const smallCtx = small.getContext("2d");

  function canvasBlob() {
    smallCtx.imageSmoothingEnabled = true;
    smallCtx.imageSmoothingQuality = "high";
    smallCtx.fillStyle = PAPER;
    smallCtx.fillRect(0, 0, SEND_SIZE, SEND_SIZE);
    smallCtx.drawImage(pad, 0, 0, SEND_SIZE, SEND_SIZE);
    return new Promise((resolve) => small.toBlob(resolve, "image/png"));
  }

  async function sendDrawing() {
    if (!dirty || inFlight) return;
    dirty = false;
    inFlight = true;
    lastSent = performance.now();
    const gen = generation;
    try {
      const blob = await canvasBlob();
      const res = await fetch("/api/predict?activations=1", {
        method: "POST", headers: { "Content-Type": "image/png" }, body: blob,
      });
      await handleResponse(res, gen, "your drawing");
    } catch (err) {
      if (gen === generation) setStatus(`Could not reach the server (${err.message}).`, true);
    } finally {
      inFlight = false;
      if (dirty && hasInk) requestPrediction(!drawing);
      setBusy();
    }
  }

  async function handleResponse(res, gen, what) {
    let body = null;
    try { body = await res.json(); } catch { body = null; }
    if (gen !== generation) return;  // the pad was cleared meanwhile
    if (!res.ok) {
      const msg = body && body.detail ? body.detail : `HTTP ${res.status}`;
      showIdle("No answer for " + what + ".");
      setStatus(msg.charAt(0).toUpperCase() + msg.slice(1), true);
      return;
    }
    show(body, what);
  }

  $("file").addEventListener("change", async (e) => {
    const file = e.target.files && e.target.files[0];
    if (!file) return;
    generation += 1;
    const gen = generation;
    const limit = model ? model.max_upload_bytes : Infinity;
    if (file.size > limit - 1024) {  // leave room for the form's own bytes
      showIdle(`No answer for ${file.name}.`);
      setStatus(`That photo is ${(file.size / 1e6).toFixed(1)} MB; this server takes up to ` +
                `${(limit / 1e6).toFixed(1)} MB. Try a smaller picture.`, true);
      e.target.value = "";
      return;
    }
    setStatus(`Reading ${file.name}…`, false);
    const form = new FormData();
    form.append("file", file, file.name);
    document.body.dataset.busy = "true";
    try {
      const res = await fetch("/api/predict?activations=1", { method: "POST", body: form });
      await handleResponse(res, gen, file.name);
    } catch (err) {
      setStatus(`Could not reach the server (${err.message}).`, true);
    }
    setBusy();
    e.target.value = "";
  });

  // ---- showing an answer ----------------------------------------------------------------------

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", Boolean(isError));
  }

  function showIdle(text) {
    prediction.textContent = "?";
    prediction.classList.add("idle");
    prediction.classList.remove("long");
    confidence.textContent = text;
    setStatus("", false);
    barEls.forEach(({ col, pct, bar }) => {
      bar.style.height = "0";
      bar.classList.remove("top");
      col.classList.remove("top");
      pct.textContent = "";
    });
    seen.getContext("2d").clearRect(0, 0, 28, 28);
    if (model && model.activation_layers.length) {
      activationsBox.innerHTML = "<p class='placeholder'>Activations appear here while you draw.</p>";
    }
  }

  function show(r, what) {
    prediction.textContent = r.name;
    prediction.classList.remove("idle");
    prediction.classList.toggle("long", r.name.length > 2);
    confidence.textContent = `${(100 * r.confidence).toFixed(1)} % sure`;
    const second = r.top3[1];
    setStatus(`Next best: ${second.name} (${(100 * second.probability).toFixed(1)} %) · ` +
              `model time ${r.model_ms.toFixed(2)} ms · ${what}`, false);
    r.probabilities.forEach((p, i) => {
      const el = barEls[i];
      if (!el) return;
      const top = i === r.label;
      el.bar.style.height = `${Math.max(0, Math.min(1, p)) * 100}%`;
      el.bar.classList.toggle("top", top);
      el.col.classList.toggle("top", top);
      el.pct.textContent = p >= 0.995 ? "100%" : p >= 0.01 ? `${Math.round(100 * p)}%` : "";
      el.bar.setAttribute("aria-label", `${labels[i]}: ${(100 * p).toFixed(1)} percent`);
    });
    drawSeen(r.input);
    if (r.activations) drawActivations(r.activations);
  }

  function drawSeen(rows) {
    const g = seen.getContext("2d");
    const img = g.createImageData(28, 28);
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) {
        const v = rows[y][x];
        const o = 4 * (28 * y + x);
        img.data[o] = img.data[o + 1] = img.data[o + 2] = v;
        img.data[o + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
  }

  // A small perceptual colour ramp (dark = silent neuron, bright = strongly active).
  const RAMP = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]];
  function colour(t) {
    t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(t));
    const f = t - i;
    const a = RAMP[i];
    const b = RAMP[i + 1];
    return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
  }

  function flatMax(a) {
    let m = 0;
    const walk = (v) => { if (Array.isArray(v)) v.forEach(walk); else if (v > m) m = v; };
    walk(a);
    return m;
  }

  function paint(canvas, values, w, h, max) {
    canvas.width = w;
    canvas.height = h;
    const g = canvas.getContext("2d");
    const img = g.createImageData(w, h);
    for (let i = 0; i < w * h; i++) {
      const c = colour(max > 0 ? values[i] / max : 0);
      img.data[4 * i] = c[0];
      img.data[4 * i + 1] = c[1];
      img.data[4 * i + 2] = c[2];
      img.data[4 * i + 3] = 255;
    }
    g.putImageData(img, 0, 0);
  }

  function layerInfo(name) {
    const rows = (model && model.architecture) || [];
    const act = rows.find((r) => r.name === name);
    const info = model && model.activation_layers.find((l) => l.name === name);
    const before = info && info.follows ? rows.find((r) => r.name === info.follows) : null;
    return { act, before };
  }

  const layerViews = new Map();   // layer name -> its DOM, reused between answers

  function drawActivations(acts) {
    const names = Object.keys(acts);
    if (!names.length) return;
    if (activationsBox.querySelector(".placeholder") || layerViews.size !== names.length) {
      activationsBox.textContent = "";
      layerViews.clear();
      let dense = 0;
      for (const name of names) {
        const flat = !Array.isArray(acts[name][0]);
        layerViews.set(name, makeLayerView(name, acts[name], flat ? ++dense : 0));
      }
      const legend = document.createElement("div");
      legend.className = "legend";
      legend.innerHTML = "<span>silent</span><span class='ramp'></span><span>most active in this layer</span>";
      activationsBox.append(legend);
    }
    for (const name of names) updateLayerView(layerViews.get(name), acts[name]);
  }

  function makeLayerView(name, values, index) {
    const wrap = document.createElement("div");
    wrap.className = "layer";
    wrap.dataset.layer = name;
    const h = document.createElement("h3");
    const title = document.createElement("span");
    const meta = document.createElement("span");
    meta.className = "meta";
    const { act, before } = layerInfo(name);
    const fn = act ? act.kind : "activation";
    const is2d = Array.isArray(values[0]);
    if (is2d) {
      const kind = before && before.kind.startsWith("Conv") ? "Convolution" : "Layer";
      title.textContent = `${kind} ${before ? before.name : name} → ${fn}`;
      meta.textContent = `${values.length} feature maps of ${values[0].length}×${values[0][0].length}: ` +
        "each map is one filter sliding over the image, lighting up where its pattern appears";
    } else {
      title.textContent = `Hidden layer ${index}${before ? ` (${before.name})` : ""} → ${fn}`;
      meta.textContent = `${values.length} neurons`;
    }
    h.append(title, meta);
    wrap.append(h);
    const view = { wrap, meta, is2d, canvases: [], count: values.length, base: meta.textContent };
    if (is2d) {
      const grid = document.createElement("div");
      grid.className = "maps" + (values.length > 32 ? " many" : "");
      for (let i = 0; i < values.length; i++) {
        const c = document.createElement("canvas");
        c.title = `${name} map ${i + 1}`;
        grid.append(c);
        view.canvases.push(c);
      }
      wrap.append(grid);
    } else {
      const c = document.createElement("canvas");
      c.className = "strip";
      c.setAttribute("role", "img");
      c.setAttribute("aria-label", `${values.length} neuron activations of ${name}`);
      wrap.append(c);
      view.canvases.push(c);
    }
    activationsBox.append(wrap);
    return view;
  }

  function updateLayerView(view, values) {
    const max = flatMax(values);
    if (view.is2d) {
      values.forEach((map, i) => {
        const h = map.length;
        const w = map[0].length;
        paint(view.canvases[i], map.flat(), w, h, max);
      });
    } else {
      const active = values.filter((v) => v > 0).length;
      paint(view.canvases[0], values, values.length, 1, max);
      view.meta.textContent = `${view.base}, ${active} active (above 0)`;
    }
  }

  // ---- start ----------------------------------------------------------------------------------

  clearPad();
  loadModel().then(() => showIdle("Draw something to start."));
})();
