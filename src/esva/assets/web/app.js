// esva serve: the page. Plain JS, no build step, no network beyond this server.
"use strict";

const COLORS = {
  neutral: "#8a94a6", calm: "#2bb3a3", happy: "#f2b705", sad: "#3f7fd9",
  angry: "#e0453a", fearful: "#8e5bd8", disgust: "#5c9e31", surprised: "#ef6fb0",
  worried: "#b07cc6", frustrated: "#d9822b", other: "#a0a7b4",
};
const FALLBACK = ["#3563e9", "#e0453a", "#2bb3a3", "#f2b705", "#8e5bd8", "#5c9e31", "#ef6fb0",
  "#d9822b", "#8a94a6", "#3f7fd9"];
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
let info = { classes: [], max_upload_mb: 200, explain: false };
let mediaUrl = null;
let busy = false;

function colorOf(name, i) {
  return COLORS[name] || FALLBACK[i % FALLBACK.length];
}

function svg(tag, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, str, anchor = "middle") {
  const t = svg("text", { x, y, "text-anchor": anchor }, parent);
  t.textContent = str;
  return t;
}

function fmt(x, digits = 2) {
  return x === null || x === undefined ? "n/a" : Number(x).toFixed(digits);
}

// ---------------------------------------------------------------------------------------------
// Start-up: what the server offers

async function loadInfo() {
  try {
    const res = await fetch("/api/info");
    info = await res.json();
    $("model-info").textContent = `model: ${info.model} · classes: ${info.classes.join(", ")}`;
    const kinds = [...info.video_suffixes, ...info.audio_suffixes].map((s) => s.slice(1));
    $("limits").textContent = `${kinds.join(", ")} · up to ${info.max_upload_mb} MB`;
    $("explain-opt").hidden = !info.explain;
  } catch (err) {
    $("model-info").textContent = "could not reach the server";
  }
}

// ---------------------------------------------------------------------------------------------
// Choosing a file

function setupDrop() {
  const drop = $("drop");
  const input = $("file-input");
  $("choose").addEventListener("click", (e) => { e.stopPropagation(); input.click(); });
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  $("explain-opt").addEventListener("click", (e) => e.stopPropagation());
  input.addEventListener("change", () => { if (input.files.length) analyse(input.files[0]); });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    if (e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]);
  });
}

// ---------------------------------------------------------------------------------------------
// Upload with progress, then the analysis

function post(url, file, onUploaded) {
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.responseType = "text";
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      const pct = (100 * e.loaded) / e.total;
      $("upload-bar").style.width = `${pct.toFixed(1)}%`;
      $("progress-text").textContent =
        `${(e.loaded / 1048576).toFixed(1)} / ${(e.total / 1048576).toFixed(1)} MB`;
    };
    xhr.upload.onload = onUploaded;
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => resolve({ status: 0, body: { error: "the server could not be reached" } });
    xhr.send(form);
  });
}

function errorText(res) {
  if (res.body && res.body.error) return res.body.error;
  return `the server answered ${res.status}`;
}

async function analyse(file) {
  if (busy) return;
  $("error").hidden = true;
  if (file.size > info.max_upload_mb * 1048576) {
    showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; ` +
      `this server accepts up to ${info.max_upload_mb} MB`);
    return;
  }
  busy = true;
  $("drop").classList.add("busy");
  $("result").hidden = true;
  $("progress").hidden = false;
  $("spinner").hidden = true;
  $("stage").textContent = `Uploading ${file.name}…`;
  $("upload-bar").style.width = "0%";
  $("progress-text").textContent = "";
  showMedia(file);
  const started = { t: 0 };
  let timer = null;
  const onUploaded = () => {
    $("upload-bar").style.width = "100%";
    $("stage").textContent = `Uploaded ${file.name}`;
    $("spinner").hidden = false;
    started.t = performance.now();
    $("elapsed").textContent = "0";
    timer = setInterval(() => {
      $("elapsed").textContent = ((performance.now() - started.t) / 1000).toFixed(0);
    }, 250);
  };
  try {
    const res = await post("/api/predict", file, onUploaded);
    if (res.status !== 200) { showError(errorText(res)); return; }
    render(res.body);
    if (info.explain && $("explain-box").checked) {
      $("explanation").textContent = "Explaining…";
      const ex = await post("/api/explain", file, () => {});
      $("explanation").textContent = ex.status === 200 ? ex.body.explanation : errorText(ex);
      $("explanation").classList.toggle("muted", ex.status !== 200);
    }
  } finally {
    clearInterval(timer);
    $("progress").hidden = true;
    $("drop").classList.remove("busy");
    busy = false;
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("progress").hidden = true;
}

function showMedia(file) {
  if (mediaUrl) URL.revokeObjectURL(mediaUrl);
  mediaUrl = URL.createObjectURL(file);
  const isAudio = file.type.startsWith("audio/") ||
    info.audio_suffixes?.some((s) => file.name.toLowerCase().endsWith(s));
  const player = document.createElement(isAudio ? "audio" : "video");
  player.src = mediaUrl;
  player.controls = true;
  player.preload = "metadata";
  player.id = "media";
  $("player").replaceChildren(player);
  $("file-name").textContent = file.name;
}

// ---------------------------------------------------------------------------------------------
// The answer

function render(r) {
  const classes = Object.keys(r.probabilities);
  $("label").textContent = r.label;
  $("label-p").textContent = `p = ${fmt(r.probabilities[r.label])}`;
  // The calibrated rule's verdict: an uncertain answer says so next to the label.
  const badge = $("certainty");
  badge.hidden = r.confident !== false;
  badge.textContent = r.confident === false ? "uncertain" : "";
  badge.title = (r.flags || []).find((f) => f.startsWith("uncertain")) || "not confident";
  renderProbs(r, classes);
  renderTimeline(r.timeline || [], classes);
  renderOffset(r);
  const used = r.modalities.join(" + ") || "none";
  $("modalities").textContent = `modalities used: ${used}` +
    (r.missing.length ? ` · missing: ${r.missing.join(", ")}` : "");
  const flags = $("flags");
  flags.replaceChildren(...r.flags.map((f) => {
    const li = document.createElement("li");
    li.textContent = f;
    return li;
  }));
  $("transcript").textContent = r.transcript ? `transcript: “${r.transcript}”` : "";
  const ex = $("explanation");
  ex.classList.add("muted");
  ex.textContent = info.explain
    ? "Tick “also explain it in words” before choosing a file to get an explanation."
    : `Not available: ${info.explain_unavailable}`;
  $("result").hidden = false;
}

function renderProbs(r, classes) {
  const rows = [];
  const order = classes.map((c, i) => [c, r.probabilities[c], i]).sort((a, b) => b[1] - a[1]);
  for (const [name, p, i] of order) {
    const label = document.createElement("span");
    label.className = "name" + (name === r.label ? " top" : "");
    label.textContent = name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    fill.style.background = colorOf(name, i);
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = fmt(p);
    rows.push(label, track, value);
  }
  $("probs").replaceChildren(...rows);
}

function renderTimeline(timeline, classes) {
  const W = 900, H = 220, L = 36, R = 12, T = 10, B = 28;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "emotion probabilities over time" });
  if (!timeline.length) { $("timeline").replaceChildren(root); return; }
  const t0 = 0;
  const t1 = Math.max(...timeline.map((w) => w.end_s), 0.001);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (p) => T + (1 - p) * (H - T - B);
  for (const p of [0, 0.5, 1]) {
    svg("line", { x1: L, x2: W - R, y1: y(p), y2: y(p), stroke: "#e2e5ea" }, root);
    text(root, L - 6, y(p) + 4, p.toFixed(1), "end");
  }
  const step = t1 > 20 ? 5 : t1 > 8 ? 2 : 1;
  for (let t = 0; t <= t1 + 1e-9; t += step) text(root, x(t), H - 10, `${t} s`);
  // One window: its probabilities hold over its extent; several: at each window's centre.
  const pts = timeline.length === 1
    ? [[timeline[0].start_s, timeline[0]], [timeline[0].end_s, timeline[0]]]
    : timeline.map((w) => [(w.start_s + w.end_s) / 2, w]);
  const mean = (c) => timeline.reduce((s, w) => s + w.probabilities[c], 0) / timeline.length;
  // Draw the strongest classes last (on top).
  const order = classes.map((c, i) => [c, i]).sort((a, b) => mean(a[0]) - mean(b[0]));
  for (const [c, i] of order) {
    const d = pts.map(([t, w]) => `${x(t).toFixed(1)},${y(w.probabilities[c]).toFixed(1)}`);
    svg("polyline", { points: d.join(" "), fill: "none", stroke: colorOf(c, i),
      "stroke-width": mean(c) > 0.2 ? 2.5 : 1.5, "stroke-linejoin": "round",
      "data-class": c }, root);
    // Dots mark the windows, so that a short clip's few points read as samples.
    if (timeline.length > 1 && timeline.length <= 60 && mean(c) > 0.02) {
      for (const [t, w] of pts) {
        svg("circle", { cx: x(t), cy: y(w.probabilities[c]), r: 3, fill: colorOf(c, i) }, root);
      }
    }
  }
  const head = svg("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#1d2430",
    "stroke-dasharray": "3 3", visibility: "hidden" }, root);
  $("timeline").replaceChildren(root);
  const media = $("media");
  if (media) {
    media.addEventListener("timeupdate", () => {
      const t = Math.min(media.currentTime, t1);
      head.setAttribute("x1", x(t));
      head.setAttribute("x2", x(t));
      head.setAttribute("visibility", "visible");
    });
    root.style.cursor = "pointer";
    root.addEventListener("click", (e) => {
      const box = root.getBoundingClientRect();
      const fx = ((e.clientX - box.left) / box.width) * W;
      media.currentTime = Math.max(0, ((fx - L) / (W - L - R)) * (t1 - t0) + t0);
    });
  }
  $("legend").replaceChildren(...classes.map((c, i) => {
    const s = document.createElement("span");
    s.style.setProperty("--c", colorOf(c, i));
    s.textContent = c;
    return s;
  }));
}

function renderOffset(r) {
  const box = $("xcorr");
  box.replaceChildren();
  if (r.offset_ms === null || r.offset_ms === undefined) {
    $("offset").textContent = "not measured (needs a video with a face and its audio)";
  } else {
    const late = r.offset_ms >= 0 ? "audio lags the video" : "audio leads the video";
    $("offset").innerHTML = "";
    const b = document.createElement("strong");
    b.textContent = `${r.offset_ms >= 0 ? "+" : ""}${fmt(r.offset_ms, 1)} ms`;
    $("offset").append(b, ` (${late}), confidence ${fmt(r.offset_confidence)}`);
  }
  const a = r.alignment;
  // An undefined offset (silence, no face) has a curve too, but nothing to read from it.
  if (!a || !a.taus_ms || !a.xcorr || r.offset_ms === null || r.offset_ms === undefined) return;
  const pts = a.taus_ms.map((t, i) => [t, a.xcorr[i]]).filter(([t, c]) => t !== null && c !== null);
  if (pts.length < 2) return;
  const W = 440, H = 180, L = 40, R = 10, T = 10, B = 40;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "cross-modal correlation against the audio lag" });
  const xs = pts.map((p) => p[0]), cs = pts.map((p) => p[1]);
  const xmin = Math.min(...xs), xmax = Math.max(...xs);
  let cmin = Math.min(...cs), cmax = Math.max(...cs);
  if (cmax - cmin < 1e-9) { cmax += 0.5; cmin -= 0.5; }
  const x = (t) => L + ((t - xmin) / (xmax - xmin)) * (W - L - R);
  const y = (c) => T + (1 - (c - cmin) / (cmax - cmin)) * (H - T - B);
  svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#e2e5ea" }, root);
  for (const t of [xmin, 0, xmax]) text(root, x(t), H - 24, `${Math.round(t)}`);
  text(root, (L + W - R) / 2, H - 6, "audio lag (ms; > 0: audio late)");
  text(root, L - 4, T + 8, "C(τ)", "end");
  const d = pts.map(([t, c]) => `${x(t).toFixed(1)},${y(c).toFixed(1)}`).join(" ");
  svg("polyline", { points: d, fill: "none", stroke: "#3563e9", "stroke-width": 2 }, root);
  if (r.offset_ms !== null && r.offset_ms >= xmin && r.offset_ms <= xmax) {
    svg("line", { x1: x(r.offset_ms), x2: x(r.offset_ms), y1: T, y2: H - B, stroke: "#1d2430",
      "stroke-dasharray": "4 3" }, root);
  }
  box.appendChild(root);
}

setupDrop();
loadInfo();
