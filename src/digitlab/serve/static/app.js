// digitlab's drawing page: plain JavaScript, no build step, no network beyond this server.
// Texts live in /static/i18n/<lang>.js (one file per language); this file holds none of its own.
"use strict";

(() => {
  const MIN_INTERVAL_MS = 60;   // while drawing, at most one request per 60 ms, and only one in flight
  const SEND_SIZE = 140;        // the drawing is sent as a 140x140 PNG: plenty for a 28x28 input, and cheap
  const PAD = 560;              // the pad's own pixel size (it is scaled by CSS)
  const BLANK_EXTENT = 0.06;    // ink spanning less than 6 % of the pad, with a short path: a tap, not a digit
  const BLANK_PATH = 0.12;
  const SMALL_EXTENT = 0.32;    // a digit spanning less than a third of the pad is "drawn small"
  const BRUSH_RATIO = 0.13;     // MNIST strokes are ~13 % of the digit's height (2.6 px of 20)
  const BRUSH_MIN = 7;
  const BRUSH_MAX = PAD * 0.065;
  const LIVE_BUDGET = 8192;     // activation values a layer may have to be sent with every answer
  const MAX_PHOTO_SIDE = 1600;  // photos are shrunk to this many pixels a side before upload
  const INK = "#ffffff";        // white ink on black, like MNIST
  const PAPER = "#000000";

  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const padHint = $("pad-hint");
  const prediction = $("prediction");
  const confidence = $("confidence");
  const note = $("note");
  const statusLine = $("status");
  const announcer = $("announce");
  const bars = $("bars");
  const seen = $("seen");
  const activationsBox = $("activations");

  // ---- language -------------------------------------------------------------------------------

  const TEXTS = window.DIGITLAB_TEXTS || {};
  const LANGS = Object.keys(TEXTS);
  const STORE = "digitlab-lang";
  let lang = pickLanguage();
  const languageListeners = [];

  function pickLanguage() {
    const norm = (l) => (/^zh/i.test(l) ? "zh-CN" : /^en/i.test(l) ? "en" : null);
    let saved = null;
    try { saved = localStorage.getItem(STORE); } catch { saved = null; }
    if (saved && TEXTS[saved]) return saved;
    const fromServer = norm(document.documentElement.lang || "");  // the server read Accept-Language
    if (fromServer === "zh-CN") return fromServer;
    for (const l of navigator.languages || [navigator.language || "en"]) {
      const n = norm(l);
      if (n && TEXTS[n]) return n;
    }
    return "en";
  }

  function t(key, vars) {
    const table = TEXTS[lang] || TEXTS.en || {};
    let s = key in table ? table[key] : (TEXTS.en && TEXTS.en[key]) || key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
    return s;
  }

  const pct = (p, digits = 1) => `${(100 * p).toFixed(digits)} %`;

  function applyLanguage() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-html]").forEach((el) => { el.innerHTML = t(el.dataset.i18nHtml); });
    document.querySelectorAll("[data-i18n-aria]").forEach((el) => {
      el.setAttribute("aria-label", t(el.dataset.i18nAria));
    });
    document.querySelectorAll("[data-i18n-alt]").forEach((el) => { el.alt = t(el.dataset.i18nAlt); });
    document.querySelectorAll(".lang-btn").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
    });
    if (model) showModel();
    rerender();
    languageListeners.forEach((f) => f(lang));
  }

  document.querySelectorAll(".lang-btn").forEach((b) => b.addEventListener("click", () => {
    if (!TEXTS[b.dataset.lang]) return;
    lang = b.dataset.lang;
    try { localStorage.setItem(STORE, lang); } catch { /* private mode */ }
    applyLanguage();
  }));

  // For other page modes (number.js): the same texts and language.
  window.digitlab = {
    t, get lang() { return lang; }, onLanguage: (f) => languageListeners.push(f), languages: LANGS,
  };

  // ---- model info -----------------------------------------------------------------------------

  let model = null;             // /api/model
  let labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
  let barEls = [];
  let steps = [];               // the pipeline diagram: [{kind, n, text, act, activation}]
  let shown2d = null;           // the feature-map layer shown (one at a time); dense layers always

  async function loadModel() {
    try {
      const res = await fetch("/api/model");
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      model = await res.json();
      labels = model.labels;
      steps = pipelineSteps(model.architecture || [], model.activation_layers || []);
      const maps = (model.activation_layers || []).filter((l) => l.shape.length === 3);
      shown2d = maps.length ? maps[maps.length - 1].name : null;
      showModel();
    } catch (err) {
      $("model-name").textContent = t("model.unavailable");
      setStatus(t("error.network", { m: err.message }), true);
    }
    buildBars();
    probeExplain();
  }

  function showModel() {
    $("model-name").textContent = model.name + (model.dataset ? ` · ${model.dataset}` : "");
    $("model-accuracy").textContent = model.test_accuracy == null ? t("model.unmeasured") : pct(model.test_accuracy, 2);
    $("model-params").textContent = model.parameters == null ? "?" : model.parameters.toLocaleString(lang);
    showPipeline();
    $("pick-hint").hidden = !(model.activation_layers || []).some((l) => l.shape.length === 3);
    if (!(model.activation_layers || []).length) {
      activationsBox.innerHTML = `<p class='placeholder'>${t("inside.none")}</p>`;
    }
  }

  // The diagram: "input 28x28 -> conv 1: 32 maps 28x28 · ReLU -> pool 14x14 -> ... -> output: 10 · softmax".
  // ReLU and 2x2 pooling commute; the activations reported are the rectified maps before pooling, so
  // each ReLU belongs to the convolution (or dense layer) before it, and "pool" shows the smaller size.
  function pipelineSteps(rows, actLayers) {
    const out = [{ kind: "input" }];
    const count = { conv: 0, dense: 0 };
    let current = null;
    const denseRows = rows.filter((r) => r.kind === "Linear");
    const lastDense = denseRows[denseRows.length - 1];
    for (const r of rows) {
      const d = r.output_shape.slice(1);
      if (r.kind === "Conv2d") {
        current = { kind: "conv", n: ++count.conv, c: d[2], h: d[0], w: d[1] };
        out.push(current);
      } else if (r.kind === "Linear") {
        current = r === lastDense ? { kind: "out", k: d[d.length - 1], act: "softmax" }
          : { kind: "dense", n: ++count.dense, k: d[d.length - 1] };
        out.push(current);
      } else if (r.kind === "MaxPool2d" || r.kind === "AvgPool2d") {
        out.push({ kind: "pool", h: d[0], w: d[1] });
      } else if (/^(ReLU|Sigmoid|Tanh|GELU|LeakyReLU|ELU|SiLU)$/.test(r.kind)) {
        if (current) {
          current.act = r.kind;
          if (actLayers.some((l) => l.name === r.name)) current.activation = r.name;
        }
      }  // flatten, dropout, batch norm: no new neurons
    }
    if (!rows.length) {  // an ONNX file without its summary: the activation layers alone
      actLayers.forEach((l) => {
        const s = l.shape;
        out.push(s.length === 3 ? { kind: "conv", n: ++count.conv, c: s[0], h: s[1], w: s[2], activation: l.name }
          : { kind: "dense", n: ++count.dense, k: s[0], activation: l.name });
      });
    }
    return out;
  }

  function stepText(st) {
    const text = st.kind === "input" ? t("layer.input")
      : st.kind === "conv" ? t("layer.conv", st)
        : st.kind === "dense" ? t("layer.dense", st)
          : st.kind === "out" ? t("layer.out", st) : t("layer.pool", st);
    return text + (st.act ? ` · ${st.act}` : "");
  }

  function showPipeline() {
    const box = $("pipeline");
    if (steps.length < 2) { box.hidden = true; return; }
    box.textContent = "";
    steps.forEach((st, i) => {
      if (i) {
        const arrow = document.createElement("span");
        arrow.className = "arrow";
        arrow.textContent = "→";
        arrow.setAttribute("aria-hidden", "true");
        box.append(arrow);
      }
      const isMap = st.kind === "conv" && st.activation;
      const chip = document.createElement(isMap ? "button" : "span");
      chip.className = `chip ${st.kind}`;
      chip.textContent = stepText(st);
      if (isMap) {
        chip.type = "button";
        chip.dataset.layer = st.activation;
        chip.setAttribute("aria-pressed", String(st.activation === shown2d));
        chip.addEventListener("click", () => {
          shown2d = st.activation;
          box.querySelectorAll("button.chip").forEach((b) => {
            b.setAttribute("aria-pressed", String(b.dataset.layer === shown2d));
          });
          rebuildLayers();
          if (lastBody) repeatLast();
        });
      }
      box.append(chip);
    });
  }

  function activationStep(name) {
    return steps.find((s) => s.activation === name) || null;
  }

  function shownLayers(final) {
    if (!model) return [];
    return (model.activation_layers || []).filter((l) => {
      if (l.shape.length !== 3) return true;
      if (l.name !== shown2d) return false;
      return final || l.shape.reduce((a, b) => a * b, 1) <= LIVE_BUDGET;
    }).map((l) => l.name);
  }

  function buildBars() {
    bars.textContent = "";
    barEls = labels.map((name, i) => {
      const col = document.createElement("div");
      col.className = "bar-col";
      const pc = document.createElement("span");
      pc.className = "bar-pct";
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.id = `bar-${i}`;
      bar.dataset.label = String(i);
      bar.title = name;
      bar.append(pc);
      col.append(bar);
      bars.append(col);
      return { col, pct: pc, bar };
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

  // ---- drawing: strokes are kept as points and the pad is redrawn from them ---------------------

  let strokes = [];             // [[{x, y}, ...], ...] in pad pixels
  let padSource = "strokes";    // what the pad holds: "strokes", "sample" (an MNIST digit) or "photo"
  let drawingId = null;         // the pointerId drawing now; other pointers never draw
  const pointersDown = new Set();
  let multiTouch = false;       // a second finger came down: nothing draws until every finger is up
  let version = 0;              // bumped at every change of the drawing
  let generation = 0;           // bumped when the pad is cleared or replaced: older answers are dropped
  let renderQueued = false;

  function inkBox() {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity, path = 0;
    for (const s of strokes) {
      for (let i = 0; i < s.length; i++) {
        const p = s[i];
        if (p.x < x0) x0 = p.x;
        if (p.x > x1) x1 = p.x;
        if (p.y < y0) y0 = p.y;
        if (p.y > y1) y1 = p.y;
        if (i) path += Math.hypot(p.x - s[i - 1].x, p.y - s[i - 1].y);
      }
    }
    if (x0 === Infinity) return null;
    return { x0, y0, x1, y1, extent: Math.max(x1 - x0, y1 - y0), path };
  }

  // The brush follows the digit's size: the model sees the digit scaled to 20x20, so a small digit
  // drawn with a fat brush becomes a blob. MNIST's strokes are about 13 % of the digit's height.
  function brushWidth(box) {
    return Math.max(BRUSH_MIN, Math.min(BRUSH_MAX, BRUSH_RATIO * (box ? box.extent : PAD)));
  }

  function paintStrokes(g, scale, width) {
    g.fillStyle = PAPER;
    g.fillRect(0, 0, g.canvas.width, g.canvas.height);
    g.strokeStyle = INK;
    g.fillStyle = INK;
    g.lineWidth = width * scale;
    g.lineCap = "round";
    g.lineJoin = "round";
    for (const s of strokes) {
      if (s.length === 1) {
        g.beginPath();
        g.arc(s[0].x * scale, s[0].y * scale, (width * scale) / 2, 0, 2 * Math.PI);
        g.fill();
        continue;
      }
      g.beginPath();
      g.moveTo(s[0].x * scale, s[0].y * scale);
      for (let i = 1; i < s.length; i++) g.lineTo(s[i].x * scale, s[i].y * scale);
      g.stroke();
    }
  }

  function render() {
    renderQueued = false;
    if (padSource === "strokes") paintStrokes(ctx, 1, brushWidth(inkBox()));
  }

  function queueRender() {
    if (!renderQueued) {
      renderQueued = true;
      requestAnimationFrame(render);
    }
  }

  function clearPad() {
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, pad.width, pad.height);
  }

  function point(e) {
    const r = pad.getBoundingClientRect();
    return { x: (e.clientX - r.left) * (pad.width / r.width), y: (e.clientY - r.top) * (pad.height / r.height) };
  }

  function startFresh() {        // the pad held a photo or an MNIST digit: drawing starts on a blank pad
    if (padSource !== "strokes") {
      padSource = "strokes";
      strokes = [];
      generation += 1;
      $("photo").hidden = true;
    }
  }

  pad.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 && e.pointerType === "mouse") return;
    e.preventDefault();
    pointersDown.add(e.pointerId);
    if (pointersDown.size > 1 || multiTouch) {   // a second finger: a pinch or a palm, never ink
      if (drawingId !== null) cancelStroke();
      multiTouch = true;
      return;
    }
    pad.setPointerCapture(e.pointerId);
    startFresh();
    drawingId = e.pointerId;
    strokes.push([point(e)]);
    if (padHint) padHint.classList.add("hidden");
    changed();
  });

  pad.addEventListener("pointermove", (e) => {
    if (e.pointerId !== drawingId) return;
    e.preventDefault();
    const stroke = strokes[strokes.length - 1];
    const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) stroke.push(point(ev));
    changed();
  });

  function pointerGone(e) {
    pointersDown.delete(e.pointerId);
    if (pad.hasPointerCapture(e.pointerId)) pad.releasePointerCapture(e.pointerId);
    if (e.pointerId === drawingId) {
      drawingId = null;
      if (e.type === "pointercancel") cancelStroke();
      else strokeEnded();
    }
    if (!pointersDown.size) multiTouch = false;
  }
  pad.addEventListener("pointerup", pointerGone);
  pad.addEventListener("pointercancel", pointerGone);
  pad.addEventListener("lostpointercapture", (e) => { if (pointersDown.has(e.pointerId)) pointerGone(e); });

  function cancelStroke() {
    if (drawingId !== null) {
      strokes.pop();
      drawingId = null;
    }
    version += 1;
    queueRender();
    if (!strokes.length) { resetAnswer(); return; }
    strokeEnded();
  }

  function changed() {
    version += 1;
    queueRender();
    requestPrediction(false);
  }

  function strokeEnded() {
    performance.mark("digitlab:stroke-end");
    queueRender();
    requestPrediction(true);
  }

  function clearAll() {
    generation += 1;
    version += 1;
    strokes = [];
    padSource = "strokes";
    drawingId = null;
    finalWanted = false;
    lastBody = null;
    if (timer) { clearTimeout(timer); timer = null; }
    setBusy();
    clearPad();
    padHint.classList.remove("hidden");
    $("photo").hidden = true;
    resetAnswer();
  }

  $("clear").addEventListener("click", () => { clearAll(); pad.focus(); });

  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.defaultPrevented) return;
    if (e.target instanceof HTMLInputElement && e.target.type !== "file") return;
    clearAll();
  });
  pad.addEventListener("keydown", (e) => {
    if (e.key === "Delete" || e.key === "Backspace") { e.preventDefault(); clearAll(); }
  });

  // ---- talking to the server: one request in flight, the latest drawing wins --------------------

  let inFlight = null;          // {version, final} of the request in flight
  let finalWanted = false;      // the stroke ended: the answer for the whole drawing must come
  let timer = null;
  let lastSent = 0;
  let lastBody = null;          // what was sent last, to ask again for other layers or an explanation

  function setBusy() {
    document.body.dataset.busy = inFlight || timer || finalWanted ? "true" : "false";
  }

  function requestPrediction(final) {
    if (padSource !== "strokes" || !strokes.length) return;
    if (final) finalWanted = true;
    const box = inkBox();
    if (final && isBlank(box)) { showBlank(); finalWanted = false; setBusy(); return; }
    if (!final && isBlank(box)) return;   // too little ink to be worth an answer yet
    document.body.dataset.busy = "true";
    if (inFlight) {
      // the request in flight already holds the whole drawing: its answer is the final one
      const complete = shownLayers(true).length === shownLayers(false).length;
      if (final && complete && inFlight.version === version) { inFlight.final = true; finalWanted = false; }
      else if (final && inFlight.stroke) inFlight.controller.abort();  // stale: the final answer goes now
      return;
    }
    if (timer && !final) return;
    if (timer) { clearTimeout(timer); timer = null; }
    // sent from its own task, never inside the input event: the pen's handlers only record points
    const wait = final ? 0 : Math.max(0, MIN_INTERVAL_MS - (performance.now() - lastSent));
    timer = setTimeout(() => { timer = null; sendDrawing(); }, wait);
  }

  function isBlank(box) {
    return !box || (box.extent < BLANK_EXTENT * PAD && box.path < BLANK_PATH * PAD);
  }

  const small = document.createElement("canvas");
  small.width = small.height = SEND_SIZE;
  const smallCtx = small.getContext("2d");

  async function sendDrawing() {
    if (inFlight || padSource !== "strokes" || !strokes.length) { setBusy(); return; }
    const final = finalWanted && drawingId === null;
    finalWanted = false;
    const box = inkBox();
    paintStrokes(smallCtx, SEND_SIZE / PAD, brushWidth(box));
    const req = { version, final, gen: generation, box, stroke: true, controller: new AbortController() };
    inFlight = req;
    lastSent = performance.now();
    try {
      const blob = await new Promise((resolve) => small.toBlob(resolve, "image/png"));
      const body = { data: blob, type: "image/png", what: { key: "what.drawing" }, box };
      await ask(body, req);
    } catch (err) {
      if (req.gen === generation && err.name !== "AbortError") setStatus(t("error.network", { m: err.message }), true);
    } finally {
      inFlight = null;
      if (req.gen === generation && padSource === "strokes") {
        if (version !== req.version || finalWanted) requestPrediction(finalWanted || drawingId === null);
      }
      setBusy();
    }
  }

  function predictUrl(final) {
    const layers = shownLayers(final);
    // single=1: this pad holds one digit (the number mode has its own canvas)
    return layers.length ? `/api/predict?activations=1&act_format=u8&layers=${layers.join(",")}&single=1`
      : "/api/predict?single=1";
  }

  async function ask(body, req) {
    lastBody = body;
    const init = body.form ? { method: "POST", body: body.form }
      : { method: "POST", headers: { "Content-Type": body.type }, body: body.data };
    if (req.controller) init.signal = req.controller.signal;
    const res = await fetch(predictUrl(req.final), init);
    let answer = null;
    try { answer = await res.json(); } catch { answer = null; }
    if (req.gen !== generation) return;   // the pad was cleared or replaced meanwhile
    performance.mark("digitlab:answer");
    if (!res.ok) { showError(res.status, answer, body.what); return; }
    show(answer, body, req.final);
    if (req.final && req.stroke) performance.measure("digitlab:final-answer", "digitlab:stroke-end", "digitlab:answer");
  }

  function repeatLast() {          // another layer was picked: ask again for the same picture
    if (!lastBody || inFlight) return;
    const req = { version, final: true, gen: generation };
    inFlight = req;
    ask(lastBody, req).catch(() => {}).finally(() => { inFlight = null; setBusy(); });
  }

  function showError(status, answer, what) {
    const detail = answer && typeof answer.detail === "string" ? answer.detail : `HTTP ${status}`;
    resetAnswer(t("error.no_answer", { what: describe(what) }));
    // English: the server's own words; other languages: the translated message for the status
    const text = lang === "en" ? detail.charAt(0).toUpperCase() + detail.slice(1)
      : t(`error.${status}`) === `error.${status}` ? detail : t(`error.${status}`);
    setStatus(text, true);
    statusLine.title = detail;
    announce(text);
  }

  function describe(what) {
    return what ? t(what.key, what.vars) : "";
  }

  // ---- uploads: the pad is cleared, the photo is shown beside its 28x28, big photos shrink first ---

  $("file").addEventListener("change", async (e) => {
    const file = e.target.files && e.target.files[0];
    e.target.value = "";
    if (!file) return;
    clearAll();
    padSource = "photo";
    const gen = generation;
    const limit = model ? model.max_upload_bytes : Infinity;
    setStatus(t("status.reading", { name: file.name }), false);
    document.body.dataset.busy = "true";
    let upload = file;
    let shrunk = null;
    let url = null;
    try {
      const bitmap = await createImageBitmap(file);
      const { width: w, height: h } = bitmap;
      const big = Math.max(w, h) > MAX_PHOTO_SIDE || file.size > limit - 1024;
      const f = big ? Math.min(1, MAX_PHOTO_SIDE / Math.max(w, h)) : 1;
      const c = document.createElement("canvas");
      c.width = Math.max(1, Math.round(w * f));
      c.height = Math.max(1, Math.round(h * f));
      c.getContext("2d").drawImage(bitmap, 0, 0, c.width, c.height);
      bitmap.close();
      if (big) {
        const blob = await new Promise((resolve) => c.toBlob(resolve, "image/jpeg", 0.9));
        upload = new File([blob], file.name.replace(/\.\w+$/, "") + ".jpg", { type: "image/jpeg" });
        shrunk = { name: file.name, w, h, w2: c.width, h2: c.height };
      }
      url = URL.createObjectURL(upload);
    } catch {
      upload = file;   // the browser cannot decode it: the server says why
    }
    if (gen !== generation) return;
    if (upload.size > limit - 1024) {  // leave room for the form's own bytes
      resetAnswer(t("error.no_answer", { what: file.name }));
      setStatus(t("error.too_big", { mb: (file.size / 1e6).toFixed(1), limit: (limit / 1e6).toFixed(1) }), true);
      setBusy();
      return;
    }
    if (url) {
      const img = $("photo-img");
      if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
      img.src = url;
      img.dataset.url = url;
    }
    const form = new FormData();
    form.append("file", upload, upload.name);
    const req = { version, final: true, gen };
    inFlight = req;
    try {
      await ask({ form, what: { key: "what.file", vars: { name: file.name } }, name: file.name, photo: Boolean(url) },
        req);
      if (shrunk && gen === generation && !statusLine.classList.contains("error")) {
        setStatus(`${statusLine.textContent} · ${t("status.shrunk", shrunk)}`, false);
      }
    } catch (err) {
      setStatus(t("error.network", { m: err.message }), true);
    } finally {
      inFlight = null;
      setBusy();
    }
  });

  // ---- a real MNIST test digit ------------------------------------------------------------------

  $("sample").addEventListener("click", async () => {
    clearAll();
    const gen = generation;
    try {
      const res = await fetch("/api/sample");
      if (res.status === 404) { setStatus(t("error.no_sample"), true); $("sample").disabled = true; return; }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const s = await res.json();
      if (gen !== generation) return;
      padSource = "sample";
      padHint.classList.add("hidden");
      const tiny = document.createElement("canvas");
      tiny.width = tiny.height = 28;
      putGrey(tiny, s.pixels);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(tiny, 0, 0, pad.width, pad.height);
      ctx.imageSmoothingEnabled = true;
      const req = { version, final: true, gen };
      inFlight = req;
      const what = { key: "what.sample", vars: { i: s.index, d: labels[s.label] ?? s.label } };
      await ask({ data: JSON.stringify({ pixels: s.pixels }), type: "application/json", what }, req);
    } catch (err) {
      setStatus(t("error.network", { m: err.message }), true);
    } finally {
      inFlight = null;
      setBusy();
    }
  });

  // ---- showing an answer ----------------------------------------------------------------------

  let lastAnswer = null;        // {r, body, final} for re-rendering in another language
  let lastState = null;         // "blank" or null

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.title = "";
    statusLine.classList.toggle("error", Boolean(isError));
  }

  function announce(text) {     // the one live region: once per stroke (final answers), never while drawing
    announcer.textContent = "";
    announcer.textContent = text;
  }

  function setNote(text) {
    note.textContent = text || "";
    note.hidden = !text;
  }

  function resetAnswer(text) {
    lastAnswer = null;
    lastState = null;
    prediction.textContent = "?";
    prediction.className = "prediction idle";
    confidence.textContent = text || t("result.start");
    confidence.dataset.i18nKey = text ? "" : "result.start";
    setNote("");
    setStatus("", false);
    barEls.forEach(({ col, pct: pc, bar }) => {
      bar.style.height = "0";
      bar.classList.remove("top");
      col.classList.remove("top");
      pc.textContent = "";
    });
    $("prob-rows").textContent = "";
    for (const id of ["seen", "step-crop", "step-fit", "step-final"]) {
      const c = $(id);
      c.getContext("2d").clearRect(0, 0, c.width, c.height);
    }
    $("saliency").textContent = "";
    if (model && (model.activation_layers || []).length) rebuildLayers(true);
  }

  function showBlank() {
    generation += 1;   // an answer still on its way is for an older drawing
    resetAnswer(t("result.blank"));
    lastState = "blank";
    prediction.textContent = "–";
    prediction.className = "prediction blank";
    setNote(t("result.blank_note"));
    announce(t("announce.blank"));
  }

  function rerender() {
    if (lastAnswer) show(lastAnswer.r, lastAnswer.body, false, true);
    else if (lastState === "blank") { confidence.textContent = t("result.blank"); setNote(t("result.blank_note")); }
    else if (confidence.dataset.i18nKey) confidence.textContent = t(confidence.dataset.i18nKey);
    rebuildLayers();
    if (lastAnswer && lastAnswer.r.activations) drawActivations(lastAnswer.r.activations);
  }

  function show(r, body, final, again) {
    const t0 = performance.now();
    lastAnswer = { r, body };
    lastState = null;
    confidence.dataset.i18nKey = "";
    const probs = r.probabilities || [];
    const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a]);
    const guess = order[0];
    const second = order[1];
    const isDigit = r.is_digit !== false;          // a server without the check: every drawing is a digit
    const unsureBelow = model && typeof model.unsure_below === "number" ? model.unsure_below : 0.6;
    const conf = typeof r.confidence === "number" ? r.confidence : probs[guess];
    const sure = isDigit && conf >= unsureBelow;
    const name = r.name != null ? r.name : labels[guess];
    let said;
    if (!isDigit) {
      prediction.textContent = "✕";
      prediction.className = "prediction reject";
      confidence.textContent = t("result.not_digit");
      const score = typeof r.digit_score === "number" ? pct(r.digit_score, 0) : "?";
      setNote(t("result.not_digit_note", { s: score, d: labels[guess] }));
      said = t("announce.not_digit");
    } else if (!sure) {
      prediction.textContent = name;
      prediction.className = "prediction unsure" + (name.length > 2 ? " long" : "");
      confidence.textContent = t("result.unsure", { p: pct(conf) });
      setNote(t("result.unsure_note", { t: pct(unsureBelow, 0), d: name, e: labels[second] }));
      said = t("announce.unsure", { d: name, p: pct(conf) });
    } else {
      prediction.textContent = name;
      prediction.className = "prediction" + (name.length > 2 ? " long" : "");
      confidence.textContent = t("result.sure", { p: pct(conf) });
      setNote("");
      said = t("announce.digit", { d: name, p: pct(conf) });
    }
    const small = body.box && body.box.extent < SMALL_EXTENT * PAD;
    if (small && isDigit) setNote([note.textContent, t("result.small")].filter(Boolean).join(" "));
    const parts = [];
    if (second != null) parts.push(t("result.next", { d: labels[second], p: pct(probs[second]) }));
    if (typeof r.model_ms === "number") parts.push(t("result.model_ms", { ms: r.model_ms.toFixed(2) }));
    parts.push(body.name ? body.name : describe(body.what));
    setStatus(parts.join(" · "), false);

    probs.forEach((p, i) => {
      const el = barEls[i];
      if (!el) return;
      const top = i === guess && isDigit;
      el.bar.style.height = `${Math.max(0, Math.min(1, p)) * 100}%`;
      el.bar.classList.toggle("top", top);
      el.col.classList.toggle("top", top);
      el.pct.textContent = p >= 0.995 ? "100%" : p >= 0.01 ? `${Math.round(100 * p)}%` : "";
    });
    if (final || again) {   // the text table and the announcement: once per stroke, not per frame
      const rows = $("prob-rows");
      rows.textContent = "";
      probs.forEach((p, i) => {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = labels[i];
        const td = document.createElement("td");
        td.textContent = pct(p);
        tr.append(th, td);
        rows.append(tr);
      });
      if (final) announce(said);
    }
    if (r.input) {
      putGrey(seen, r.input);
      putGrey($("step-final"), r.input);
      if (body.photo) { $("photo").hidden = false; putGrey($("photo-seen"), r.input); }
    }
    if (final) showSteps(body);
    if (r.activations && !again) drawActivations(r.activations);
    performance.measure("digitlab:show", { start: t0, end: performance.now() });
  }

  function putGrey(canvas, rows) {
    const g = canvas.getContext("2d");
    const img = g.createImageData(28, 28);
    for (let y = 0; y < 28; y++) {
      const row = rows[y];
      for (let x = 0; x < 28; x++) {
        const o = 4 * (28 * y + x);
        img.data[o] = img.data[o + 1] = img.data[o + 2] = row[x];
        img.data[o + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
  }

  // The first two preprocessing steps, redone here from the drawing; the third is the server's input.
  function showSteps(body) {
    const crop = $("step-crop");
    const fit = $("step-fit");
    for (const c of [crop, fit]) {
      const g = c.getContext("2d");
      g.fillStyle = PAPER;
      g.fillRect(0, 0, c.width, c.height);
    }
    if (!body.box || padSource !== "strokes") return;
    const w = brushWidth(body.box);
    const b = body.box;
    const x0 = Math.max(0, b.x0 - w / 2);
    const y0 = Math.max(0, b.y0 - w / 2);
    const bw = Math.min(PAD, b.x1 + w / 2) - x0;
    const bh = Math.min(PAD, b.y1 + w / 2) - y0;
    const side = Math.max(bw, bh);
    const g1 = crop.getContext("2d");
    g1.drawImage(pad, x0, y0, bw, bh, (28 * (1 - bw / side)) / 2, (28 * (1 - bh / side)) / 2,
      (28 * bw) / side, (28 * bh) / side);
    const g2 = fit.getContext("2d");
    const f = 20 / side;
    g2.strokeStyle = "#4f8cff";
    g2.strokeRect(3.5, 3.5, 21, 21);
    g2.drawImage(pad, x0, y0, bw, bh, 4 + (20 - bw * f) / 2, 4 + (20 - bh * f) / 2, bw * f, bh * f);
  }

  // ---- activations: one canvas per layer, 8-bit values from the server -------------------------

  // A perceptual colour ramp (dark = silent neuron, bright = strongly active), as a 256-entry table.
  const RAMP = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]];
  const LUT = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v++) {
    const tt = (v / 255) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(tt));
    const f = tt - i;
    for (let k = 0; k < 3; k++) LUT[3 * v + k] = RAMP[i][k] + f * (RAMP[i + 1][k] - RAMP[i][k]);
  }

  function bytesOf(layer) {     // {shape, scale, data: base64} -> Uint8Array; nested lists also work
    if (layer && typeof layer.data === "string") {
      const s = atob(layer.data);
      const out = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
      return { shape: layer.shape, bytes: out };
    }
    const flat = Array.isArray(layer) ? layer.flat(3) : [];
    let max = 0;
    for (const v of flat) if (v > max) max = v;
    const shape = [];
    for (let a = layer; Array.isArray(a); a = a[0]) shape.push(a.length);
    return { shape, bytes: Uint8Array.from(flat, (v) => (max > 0 ? Math.round((255 * Math.max(0, v)) / max) : 0)) };
  }

  const layerViews = new Map();   // layer name -> its DOM, reused between answers

  function rebuildLayers(placeholder) {
    if (!model) return;
    const names = shownLayers(true);
    activationsBox.textContent = "";
    layerViews.clear();
    if (!names.length) return;
    for (const name of names) layerViews.set(name, makeLayerView(name));
    const legend = document.createElement("div");
    legend.className = "legend";
    const a = document.createElement("span");
    a.textContent = t("legend.silent");
    const ramp = document.createElement("span");
    ramp.className = "ramp";
    const b = document.createElement("span");
    b.textContent = t("legend.active");
    legend.append(a, ramp, b);
    activationsBox.append(legend);
    if (placeholder) {
      const p = document.createElement("p");
      p.className = "placeholder";
      p.textContent = t("inside.placeholder");
      activationsBox.prepend(p);
    }
  }

  function makeLayerView(name) {
    const info = model.activation_layers.find((l) => l.name === name);
    const st = activationStep(name) || { kind: info.shape.length === 3 ? "conv" : "dense", n: "", act: "" };
    const fn = st.act || "ReLU";
    const wrap = document.createElement("div");
    wrap.className = "layer";
    wrap.dataset.layer = name;
    const h = document.createElement("h3");
    const title = document.createElement("span");
    const meta = document.createElement("span");
    meta.className = "meta";
    const is2d = info.shape.length === 3;
    const c = document.createElement("canvas");
    if (is2d) {
      const [n, hh, ww] = info.shape;
      title.textContent = t("layer.conv_title", { n: st.n, f: fn });
      meta.textContent = t("layer.conv_meta", { c: n, h: hh, w: ww });
      c.className = "maps";
      c.setAttribute("aria-label", t("layer.map_label", { c: n, n: st.n }));
    } else {
      title.textContent = t("layer.dense_title", { n: st.n, f: fn });
      meta.textContent = t("layer.dense_meta", { k: info.shape[0], a: "…" });
      c.className = "strip";
      c.setAttribute("aria-label", t("layer.strip_label", { k: info.shape[0] }));
    }
    c.setAttribute("role", "img");
    h.append(title, meta);
    wrap.append(h, c);
    if (is2d && info.shape.reduce((x, y) => x * y, 1) > LIVE_BUDGET) {
      const p = document.createElement("p");
      p.className = "meta small";
      p.textContent = t("inside.final_only");
      wrap.append(p);
    }
    activationsBox.append(wrap);
    return { wrap, meta, is2d, canvas: c, shape: info.shape, st };
  }

  function drawActivations(acts) {
    activationsBox.querySelector(".placeholder")?.remove();
    for (const [name, layer] of Object.entries(acts)) {
      const view = layerViews.get(name);
      if (!view) continue;
      const { shape, bytes } = bytesOf(layer);
      if (view.is2d) paintMaps(view.canvas, bytes, shape);
      else {
        paintStrip(view.canvas, bytes);
        let active = 0;
        for (const v of bytes) if (v > 0) active++;
        view.meta.textContent = t("layer.dense_meta", { k: bytes.length, a: active });
      }
    }
  }

  function paintMaps(canvas, bytes, shape) {   // C maps of HxW tiled on one canvas, 1 px apart
    const [n, h, w] = shape;
    const cols = n <= 32 ? Math.min(n, 16) : 32;
    const rows = Math.ceil(n / cols);
    const W = cols * (w + 1) - 1;
    const H = rows * (h + 1) - 1;
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    const g = canvas.getContext("2d");
    const img = g.createImageData(W, H);
    const d = img.data;
    for (let m = 0; m < n; m++) {
      const ox = (m % cols) * (w + 1);
      const oy = Math.floor(m / cols) * (h + 1);
      for (let y = 0; y < h; y++) {
        let o = 4 * ((oy + y) * W + ox);
        let s = (m * h + y) * w;
        for (let x = 0; x < w; x++, o += 4, s++) {
          const v = 3 * bytes[s];
          d[o] = LUT[v]; d[o + 1] = LUT[v + 1]; d[o + 2] = LUT[v + 2]; d[o + 3] = 255;
        }
      }
    }
    g.putImageData(img, 0, 0);
  }

  function paintStrip(canvas, bytes) {
    if (canvas.width !== bytes.length) { canvas.width = bytes.length; canvas.height = 1; }
    const g = canvas.getContext("2d");
    const img = g.createImageData(bytes.length, 1);
    for (let i = 0; i < bytes.length; i++) {
      const v = 3 * bytes[i];
      img.data[4 * i] = LUT[v]; img.data[4 * i + 1] = LUT[v + 1]; img.data[4 * i + 2] = LUT[v + 2];
      img.data[4 * i + 3] = 255;
    }
    g.putImageData(img, 0, 0);
  }

  // ---- where did it look: a saliency map, when the server offers /api/explain -----------------

  async function probeExplain() {
    try {
      const res = await fetch("/openapi.json");
      const spec = res.ok ? await res.json() : null;
      $("explain-box").hidden = !(spec && spec.paths && spec.paths["/api/explain"]);
    } catch { /* no explanation on offer */ }
  }

  function maps28(o, path, out) {   // every 28x28 grid of numbers in the answer, with where it was
    if (Array.isArray(o) && o.length === 28 && o.every((r) => Array.isArray(r) && r.length === 28
        && typeof r[0] === "number")) { out.push({ path, grid: o }); return out; }
    if (o && typeof o === "object") {
      for (const [k, v] of Object.entries(o)) if (k !== "input") maps28(v, path.concat(k), out);
    }
    return out;
  }

  $("explain").addEventListener("click", async () => {
    const body = lastBody;
    const box = $("saliency");
    if (!body) return;
    box.textContent = t("explain.busy");
    try {
      const init = body.form ? { method: "POST", body: body.form }
        : { method: "POST", headers: { "Content-Type": body.type }, body: body.data };
      const res = await fetch("/api/explain", init);
      const answer = await res.json();
      if (!res.ok) throw new Error(answer && answer.detail ? answer.detail : `HTTP ${res.status}`);
      box.textContent = "";
      const name = lastAnswer ? (lastAnswer.r.name ?? "?") : "?";
      for (const { path, grid } of maps28(answer, [], []).slice(0, 2)) {
        const fig = document.createElement("figure");
        const c = document.createElement("canvas");
        c.width = c.height = 28;
        c.setAttribute("role", "img");
        c.setAttribute("aria-label", `${t("explain.map")} ${path.join(" ")}`);
        const g = c.getContext("2d");
        const img = g.createImageData(28, 28);
        for (let i = 0; i < 784; i++) {
          const v = Math.max(-1, Math.min(1, grid[Math.floor(i / 28)][i % 28]));
          img.data[4 * i] = v > 0 ? 255 : 255 * (1 + v);
          img.data[4 * i + 1] = 255 * (1 - Math.abs(v));
          img.data[4 * i + 2] = v < 0 ? 255 : 255 * (1 - v);
          img.data[4 * i + 3] = 255;
        }
        g.putImageData(img, 0, 0);
        const cap = document.createElement("figcaption");
        cap.textContent = path.join(" · ");
        fig.append(c, cap);
        box.append(fig);
      }
      const p = document.createElement("p");
      p.className = "meta";
      p.textContent = t("explain.caption", { d: name });
      box.append(p);
    } catch (err) {
      box.textContent = t("error.explain", { m: err.message });
    }
  });

  // ---- start ----------------------------------------------------------------------------------

  clearPad();
  applyLanguage();
  loadModel().then(() => { resetAnswer(); applyLanguage(); });
})();
