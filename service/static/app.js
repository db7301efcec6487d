// The ALOHA service's web page: plain DOM, no framework, no build step, no network but this server.
// Everything the server sends (ids, names, messages) enters the page as text nodes, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);

// --- DOM ---------------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(node, on) { node.hidden = !on; }

function showError(id, err) {
  const box = $(id);
  if (!err) { box.textContent = ""; show(box, false); return; }
  box.textContent = err instanceof ApiError ? err.message : `error: ${err.message || err}`;
  show(box, true);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- the API -------------------------------------------------------------------------------------

let token = sessionStorage.getItem("aloha-token") || "";

class ApiError extends Error {
  constructor(status, detail) {
    super(`HTTP ${status}: ${detailText(detail)}`);
    this.status = status;
    this.detail = detail;
  }
}

// FastAPI's detail: a message, or a list of validation errors {loc, msg}.
function detailText(detail) {
  if (!Array.isArray(detail)) return String(detail);
  return detail.map((e) => {
    const loc = Array.isArray(e.loc) ? e.loc : [];
    const at = loc.indexOf("params");
    const where = (at >= 0 ? loc.slice(at) : loc.filter((p) => p !== "body")).join(".");
    return where ? `${where}: ${e.msg}` : String(e.msg);
  }).join("; ");
}

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

async function api(method, path, body, contentType) {
  const init = { method, headers: authHeaders() };
  if (body !== undefined) {
    init.headers["Content-Type"] = contentType || "application/json";
    init.body = contentType ? body : JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (_) { /* not JSON: the status text */ }
    if (r.status === 401) show($("token-box"), true);
    throw new ApiError(r.status, detail);
  }
  if (r.status === 204) return null;
  return (r.headers.get("content-type") || "").includes("json") ? r.json() : r.blob();
}

const jobPath = (id) => `/jobs/${encodeURIComponent(id)}`;
const artefactPath = (id, path) =>
  `${jobPath(id)}/artefacts/${path.split("/").map(encodeURIComponent).join("/")}`;

// An artefact image, fetched with the token when there is one.
const blobUrls = new Map();
async function setImage(img, path) {
  const blob = await api("GET", path);
  const url = URL.createObjectURL(blob);
  if (blobUrls.has(img)) URL.revokeObjectURL(blobUrls.get(img));
  blobUrls.set(img, url);
  await new Promise((resolve) => { img.onload = img.onerror = resolve; img.src = url; });
}

// A job's server-sent events, read with fetch (an EventSource cannot send the token). Calls
// onEvent(event) for each, returns at `end`; a dropped connection resumes after Last-Event-ID.
async function follow(jobId, onEvent, signal) {
  let last = null;
  for (let attempt = 0; attempt < 30; attempt++) {
    const headers = authHeaders(last ? { "Last-Event-ID": last } : {});
    const r = await fetch(`${jobPath(jobId)}/events`, { headers, signal });
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail; } catch (_) { /* the status text */ }
      throw new ApiError(r.status, detail);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", type = "message", data = [], id = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        let line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) {
            const event = JSON.parse(data.join("\n"));
            event.type = type;
            if (id !== null) last = id;
            onEvent(event);
            if (type === "end") return event;
          }
          type = "message"; data = []; id = null;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") type = val;
        else if (field === "data") data.push(val);
        else if (field === "id") id = val;
      }
    }
    await sleep(500);
  }
  throw new Error(`the event stream of job ${jobId} kept dropping`);
}

// --- numbers and units ---------------------------------------------------------------------------

// At least `digits` significant digits, fixed notation (no exponent): 0.1521, 6973, 256.6.
function sig(v, digits = 4) {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const p = Math.floor(Math.log10(Math.abs(v)));
  return v.toFixed(Math.min(12, Math.max(0, digits - 1 - p)));
}

const grouped = (v) => Math.round(v).toLocaleString("en-US");

// The analysis figures the page shows, in this order, when the result has them.
const FIGURES = [
  ["latency_s", "latency", (v) => [sig(v * 1e3), "ms"]],
  ["period_s", "period", (v) => [sig(v * 1e3), "ms"]],
  ["throughput_fps", "throughput", (v) => [sig(v), "frames/s"]],
  ["energy_j", "energy per frame", (v) => [sig(v * 1e3), "mJ"]],
  ["average_power_w", "average power", (v) => [sig(v), "W"]],
  ["gops_per_s", "performance", (v) => [sig(v), "GOPS"]],
  ["gops_per_w", "efficiency", (v) => [sig(v), "GOPS/W"]],
  ["processors", "processors", (v) => [String(v), ""]],
  ["memory_bytes", "memory", (v) => [sig(v / 1024), "KiB"]],
  ["parameter_bytes", "parameters", (v) => [sig(v / 1024), "KiB"]],
  ["buffer_bytes", "buffers", (v) => [sig(v / 1024), "KiB"]],
  ["macs", "MACs per frame", (v) => [grouped(v), ""]],
  ["datatype", "data type", (v) => [String(v), ""]],
  ["fits", "fits in memory", (v) => [v ? "yes" : "no", ""]],
];

function figureRows(tbody, rows) {
  tbody.replaceChildren(...rows.map(([key, label, value, unit, raw]) =>
    el("tr", {}, el("th", {}, label),
      el("td", { class: "num", "data-key": key, "data-value": raw }, value),
      el("td", { class: "unit" }, unit))));
}

// --- resources -----------------------------------------------------------------------------------

// Options for `select`: the value it had, else `preferred`, else the first; `force` selects
// `preferred` whatever it had (a model just uploaded).
function fillSelect(select, items, preferred, force) {
  const keep = force ? preferred : select.value;
  select.replaceChildren(...items.map((it) =>
    el("option", { value: it.value, title: it.title || "" }, it.label)));
  const values = items.map((it) => it.value);
  select.value = values.includes(keep) ? keep
    : values.includes(preferred) ? preferred : (values[0] || "");
}

const modelNames = new Map();  // reference -> name, for the job list

const modelName = (ref) => modelNames.get(ref) || ref;

async function loadModels(uploaded) {
  const all = await api("GET", "/models");
  for (const m of all) modelNames.set(m.ref, m.name);
  const models = all.filter((m) => m.available);
  const items = models.map((m) => ({
    value: m.ref, title: m.description,
    label: m.source === "uploaded" ? `${m.name} (uploaded)` : m.name,
  }));
  fillSelect($("an-model"), items, uploaded || "zoo:lenet5", Boolean(uploaded));
  fillSelect($("se-model"), items, "zoo:digits_cnn");
}

async function loadResources() {
  try {
    const [version, platforms, datasets] = await Promise.all([
      api("GET", "/version"), api("GET", "/platforms"), api("GET", "/datasets")]);
    $("version").textContent = `aloha ${version.aloha} · API ${version.api}`;
    fillSelect($("an-target"), platforms.map((p) => ({
      value: p.name, label: p.name, title: `${p.description} (${p.datatypes.join(", ")})`,
    })), "neuraghe-losa");
    fillSelect($("se-data"), datasets.map((d) => ({
      value: d.ref, label: d.name, title: d.description,
    })), "digits");
    await loadModels();
    showError("page-error", null);
  } catch (err) {
    showError("page-error", err);
  }
}

// --- analyze -------------------------------------------------------------------------------------

async function upload(file) {
  const status = $("an-status");
  showError("an-error", null);
  status.textContent = `uploading ${file.name}…`;
  try {
    const stored = await api("POST", `/models?name=${encodeURIComponent(file.name)}`, file,
      "application/octet-stream");
    await loadModels(stored.ref);
    status.textContent = `${stored.name}: ${stored.description}`;
  } catch (err) {
    status.textContent = "";
    showError("an-error", err);
  } finally {
    $("an-upload").value = "";
  }
}

// Run a job from a panel: `section` (its element id) and `prefix` (of its -status, -submit and
// -error elements). The status follows the job's state (and `onEvent` sees every other event);
// when the job succeeded `done` gets it, else its error is shown.
async function runJob(section, prefix, kind, params, onEvent, done) {
  const status = $(`${prefix}-status`), button = $(`${prefix}-submit`);
  button.disabled = true;
  try {
    const job = await api("POST", "/jobs", { kind, params });
    $(section).dataset.job = job.id;
    status.textContent = job.state;
    refreshJobs();
    await follow(job.id, (e) => {
      if (e.type === "state") status.textContent = e.state;
      else if (onEvent) onEvent(e, status);
    });
    const ended = await api("GET", jobPath(job.id));
    refreshJobs();
    status.textContent = ended.state + (ended.cached_from ? " (cached)" : "");
    if (ended.state === "succeeded") await done(ended);
    else if (ended.error) showError(`${prefix}-error`, new Error(ended.error));
  } catch (err) {
    status.textContent = "";
    showError(`${prefix}-error`, err);
  } finally {
    button.disabled = false;
  }
}

// The job's artefact `name` (an image) in the <img> `img`, and its box shown, if the job wrote it.
async function showArtefactImage(jobId, name, img, box) {
  const files = await api("GET", `${jobPath(jobId)}/artefacts`);
  if (files.some((f) => f.path === name)) {
    await setImage($(img), artefactPath(jobId, name));
    show($(box), true);
  }
}

function analyze(ev) {
  ev.preventDefault();
  showError("an-error", null);
  for (const id of ["an-what", "an-figures", "an-gantt-box"]) show($(id), false);
  const params = { model: $("an-model").value, target: $("an-target").value, gantt: true };
  if ($("an-bits").value) params.bits = Number($("an-bits").value);
  return runJob("analyze", "an", "analyze", params, null, async (job) => {
    const r = job.result;
    const rows = FIGURES.filter(([key]) => r[key] !== undefined && r[key] !== null)
      .map(([key, label, fmt]) => [key, label, ...fmt(r[key]), r[key]]);
    $("an-what").textContent = `${modelName(params.model)} on ${params.target}` +
      (r.datatype ? `, ${r.datatype}` : "");
    show($("an-what"), true);
    figureRows($("an-figures").tBodies[0], rows);
    show($("an-figures"), true);
    await showArtefactImage(job.id, "gantt.png", "an-gantt", "an-gantt-box");
  });
}

// --- security: the curve, drawn point by point ---------------------------------------------------

// The epsilon grid of a START:STOP:STEP (STOP included) or comma-separated parameter, or null.
function parseGrid(text) {
  const t = (text || "").trim();
  if (!t) return null;
  if (t.includes(":")) {
    const [a, b, c] = t.split(":").map(Number);
    if (![a, b, c].every(Number.isFinite) || c <= 0 || b < a) return null;
    const out = [];
    for (let i = 0; a + i * c <= b + 1e-9 && out.length < 1000; i++) out.push(a + i * c);
    return out;
  }
  const out = t.split(",").map(Number);
  return out.every(Number.isFinite) ? out : null;
}

const NORMS = { inf: "L∞", 2: "L2", 1: "L1" };

class Curve {
  constructor(node) {
    this.node = node;
    this.w = 420; this.h = 250;
    this.m = { l: 46, r: 14, t: 14, b: 40 };
    this.reset(null, "inf");
  }

  reset(grid, norm) {
    this.grid = grid;
    this.norm = norm;
    this.points = new Map();  // eps -> {accuracy, samples, of}
    this.clean = null;
    this.streamed = 0;        // point events received
    this.draw();
  }

  set(eps, accuracy, samples, of) {
    this.points.set(eps, { accuracy, samples, of });
    this.draw();
  }

  domain() {
    const xs = [...(this.grid || []), ...this.points.keys()];
    let lo = xs.length ? Math.min(...xs) : 0, hi = xs.length ? Math.max(...xs) : 1;
    if (hi <= lo) hi = lo + 1;
    return [lo, hi];
  }

  draw() {
    const { w, h, m } = this, node = this.node;
    const [lo, hi] = this.domain();
    const x = (e) => m.l + (e - lo) / (hi - lo) * (w - m.l - m.r);
    const y = (a) => h - m.b - a * (h - m.t - m.b);
    node.replaceChildren();
    node.dataset.points = String(this.points.size);
    node.dataset.streamed = String(this.streamed);
    for (const a of [0, 0.25, 0.5, 0.75, 1]) {
      node.append(svg("line", { x1: m.l, x2: w - m.r, y1: y(a), y2: y(a), class: "grid" }));
      node.append(svg("text", { x: m.l - 6, y: y(a) + 4, class: "tick", "text-anchor": "end" },
        a.toFixed(2)));
    }
    const ticks = this.grid && this.grid.length <= 11 ? this.grid
      : [0, 1, 2, 3, 4].map((i) => lo + i * (hi - lo) / 4);
    for (const e of ticks) {
      node.append(svg("line", { x1: x(e), x2: x(e), y1: h - m.b, y2: h - m.b + 4, class: "axis" }));
      node.append(svg("text", { x: x(e), y: h - m.b + 16, class: "tick", "text-anchor": "middle" },
        String(Number(e.toPrecision(3)))));
    }
    node.append(svg("line", { x1: m.l, x2: w - m.r, y1: h - m.b, y2: h - m.b, class: "axis" }));
    node.append(svg("line", { x1: m.l, x2: m.l, y1: m.t, y2: h - m.b, class: "axis" }));
    const normName = NORMS[this.norm] || this.norm;
    node.append(svg("text", { x: (m.l + w - m.r) / 2, y: h - 6, class: "label",
      "text-anchor": "middle" }, `epsilon (${normName})`));
    node.append(svg("text", { x: 12, y: (m.t + h - m.b) / 2, class: "label",
      "text-anchor": "middle", transform: `rotate(-90 12 ${(m.t + h - m.b) / 2})` },
      "accuracy under attack"));
    if (this.clean !== null) {
      node.append(svg("line", { x1: m.l, x2: w - m.r, y1: y(this.clean), y2: y(this.clean),
        class: "clean" }));
      node.append(svg("text", { x: w - m.r - 2, y: y(this.clean) - 4, class: "tick",
        "text-anchor": "end" }, `clean ${this.clean.toFixed(2)}`));
    }
    const pts = [...this.points.entries()].sort((p, q) => p[0] - q[0]);
    if (pts.length > 1) {
      node.append(svg("polyline", { class: "curve",
        points: pts.map(([e, p]) => `${x(e)},${y(p.accuracy)}`).join(" ") }));
    }
    for (const [e, p] of pts) {
      const partial = p.of && p.samples < p.of;
      const dot = svg("circle", { cx: x(e), cy: y(p.accuracy), r: 4.5,
        class: partial ? "pt partial" : "pt", "data-eps": e, "data-accuracy": p.accuracy });
      dot.append(svg("title", {}, `epsilon ${e}: accuracy ${p.accuracy.toFixed(3)}` +
        (p.of ? ` (${p.samples} of ${p.of} samples)` : "")));
      node.append(dot);
    }
  }
}

let curve = null;

function security(ev) {
  ev.preventDefault();
  showError("se-error", null);
  show($("se-figures"), false);
  show($("se-examples-box"), false);
  const attack = $("se-attack").value, norm = $("se-norm").value;
  const params = { model: $("se-model").value, data: $("se-data").value, attack, norm,
    samples: Number($("se-samples").value) || undefined, examples: 3 };
  const eps = $("se-eps").value.trim();
  if (eps) params.eps = eps;
  if (attack === "pgd" && $("se-steps").value) params.steps = Number($("se-steps").value);
  curve.reset(parseGrid(eps), norm);
  $("se-what").textContent = `${modelName(params.model)} on ${params.data}: ` +
    `${attack.toUpperCase()}${params.steps ? `-${params.steps}` : ""} ${NORMS[norm] || norm}` +
    (params.samples ? `, ${params.samples} samples` : "");
  show($("se-what"), true);
  const onEvent = (e, status) => {
    if (e.type === "progress") status.textContent = e.text;
    else if (e.type === "point" && e.accuracy !== null) {
      curve.streamed += 1;
      curve.set(e.eps, e.accuracy, e.samples, e.of);
    }
  };
  return runJob("security", "se", "security", params, onEvent, async (job) => {
    const r = job.result;  // the final curve (a cached job streams no points)
    curve.clean = r.clean_accuracy;
    r.eps.forEach((e, i) => curve.set(e, r.accuracy[i], r.samples, r.samples));
    const report = await api("GET", artefactPath(job.id, "security.json"));
    const rows = [
      ["clean_accuracy", "clean accuracy", sig(report.clean_accuracy, 3), "",
        report.clean_accuracy],
      ["curve_average", "curve average", sig(report.curve_average, 3), "", report.curve_average],
      ["level", "security level", report.level, "", report.level],
      ["samples", "samples", String(report.samples), "", report.samples],
      ["attack", "attack", `${report.attack.toUpperCase()}` +
        (report.attack === "pgd" ? `-${report.steps}` : ""), "", report.attack],
    ];
    for (const w of report.warnings || []) rows.push(["warning", "warning", w, "", w]);
    figureRows($("se-figures").tBodies[0], rows);
    show($("se-figures"), true);
    await showArtefactImage(job.id, "examples.png", "se-examples", "se-examples-box");
  });
}

// --- jobs ----------------------------------------------------------------------------------------

const LOG_LINES = 5000;  // the log view keeps the last lines (the job's zip has them all)
let selected = null;   // the job whose log is shown
let logAbort = null;

function clock(t) {
  return t ? new Date(t * 1000).toLocaleTimeString("en-GB") : "";
}

function duration(job) {
  if (job.cached_from) return "cached";
  if (!job.started) return "";
  const s = (job.finished || Date.now() / 1000) - job.started;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function subject(job) {
  const p = job.params || {};
  if (job.stage) return `stage ${job.stage}`;
  if (p.model) return modelName(p.model) + (p.target ? ` on ${p.target}` : "");
  if (p.explore) return `${p.explore.space} on ${p.explore.target}`;
  return p.space || "";
}

async function control(action, job) {
  showError("jobs-error", null);
  try {
    if (action === "cancel") await api("POST", `${jobPath(job.id)}/cancel`);
    else {
      if (!window.confirm(`Delete job ${job.id} and all its files?`)) return;
      await api("DELETE", jobPath(job.id));
      if (selected === job.id) select(null);
    }
  } catch (err) {
    showError("jobs-error", err);
  }
  refreshJobs();
}

function jobRow(job, child) {
  const final = ["succeeded", "failed", "cancelled"].includes(job.state);
  const row = el("tr", { "data-job-id": job.id, "data-state": job.state,
    class: [child ? "child" : "", selected === job.id ? "selected" : ""].join(" ").trim(),
    onclick: (e) => { if (!e.target.closest("button, a")) select(job.id); } },
  el("td", { class: "mono", title: job.id }, child ? "└ " : "", job.id.slice(0, 8)),
  el("td", {}, job.kind),
  el("td", {}, el("span", { class: `badge ${job.state}`, title: job.error || "" }, job.state)),
  el("td", { class: "subject" }, subject(job)),
  el("td", { title: `created ${clock(job.created)}` }, duration(job)),
  el("td", { class: "actions" },
    final ? el("a", { href: `${jobPath(job.id)}/archive`, title: "every artefact as a zip",
      onclick: (e) => download(e, `${jobPath(job.id)}/archive`, `${job.kind}-${job.id}.zip`) },
    "zip") : "",
    final ? "" : el("button", { type: "button", class: "small cancel",
      onclick: () => control("cancel", job) }, "cancel"),
    el("button", { type: "button", class: "small delete",
      onclick: () => control("delete", job) }, "delete")));
  return row;
}

let refreshing = false, again = false;
async function refreshJobs() {
  if (refreshing) { again = true; return; }  // one more after the one in flight
  refreshing = true;
  try {
    const [jobs, health] = await Promise.all([api("GET", "/jobs?limit=200"),
      api("GET", "/health")]);
    // a flow's stages under it, in the order they ran (a stage whose flow is not on this page
    // of the list is shown on its own)
    const ids = new Set(jobs.map((j) => j.id));
    const stages = new Map();
    for (const j of jobs) {
      if (j.parent && ids.has(j.parent)) {
        if (!stages.has(j.parent)) stages.set(j.parent, []);
        stages.get(j.parent).push(j);
      }
    }
    const rows = [];
    for (const job of jobs.filter((j) => !j.parent || !ids.has(j.parent))) {
      rows.push(jobRow(job, false));
      const mine = (stages.get(job.id) || []).sort((p, q) => p.created - q.created);
      for (const c of mine) rows.push(jobRow(c, true));
    }
    $("jobs-table").tBodies[0].replaceChildren(...rows);
    const c = health.jobs;
    $("health").textContent = `${health.workers} workers (${health.launcher}) · ` +
      `${c.running} running · ${c.queued} queued`;
    showError("jobs-error", null);
  } catch (err) {
    showError("jobs-error", err);
  } finally {
    refreshing = false;
    if (again) { again = false; refreshJobs(); }
  }
}

// A download through fetch when a token is needed (a plain link cannot send it).
async function download(ev, path, name) {
  if (!token) return;
  ev.preventDefault();
  try {
    const blob = await api("GET", path);
    const url = URL.createObjectURL(blob);
    el("a", { href: url, download: name }).click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    showError("jobs-error", err);
  }
}

async function showArtefacts(jobId, box) {
  try {
    const files = await api("GET", `${jobPath(jobId)}/artefacts`);
    box.replaceChildren(...files.map((f) => el("li", {},
      el("a", { href: artefactPath(jobId, f.path), target: "_blank", rel: "noopener",
        onclick: (e) => download(e, artefactPath(jobId, f.path), f.path.split("/").pop()) },
      f.path), ` ${sig(f.bytes / 1024, 3)} KiB`)));
  } catch (err) {
    box.replaceChildren(el("li", { class: "error" }, err.message));
  }
}

function select(jobId) {
  if (logAbort) logAbort.abort();
  logAbort = null;
  selected = jobId;
  for (const tr of $("jobs-table").tBodies[0].rows) {
    tr.classList.toggle("selected", tr.dataset.jobId === jobId);
  }
  $("log-job").textContent = jobId || "";
  const log = $("log");
  const files = el("ul", { id: "artefacts", class: "artefacts" });
  $("log-box").querySelector(".artefacts")?.remove();
  if (!jobId) { log.textContent = "select a job to follow its log"; return; }
  log.textContent = "";
  $("log-box").insertBefore(files, log);
  const abort = new AbortController();
  logAbort = abort;
  const add = (line) => {
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(document.createTextNode(line + "\n"));
    while (log.childNodes.length > LOG_LINES) log.firstChild.remove();
    if (atEnd) log.scrollTop = log.scrollHeight;
  };
  follow(jobId, (e) => {
    if (e.type === "log") add(e.line);
    else if (e.type === "state") add(`[${e.state}]` + (e.error ? ` ${e.error}` : ""));
    else if (e.type === "progress") add(`[progress] ${e.text}`);
    else if (e.type === "point") add(`[point] epsilon ${e.eps}: accuracy ${e.accuracy}`);
    else if (e.type === "design_point") add(`[design point ${e.index}]`);
    else if (e.type === "end") {
      add(`[end: ${e.state}]`);
      showArtefacts(jobId, files);
    }
  }, abort.signal).catch((err) => { if (err.name !== "AbortError") add(`[${err.message}]`); });
}

// --- start ---------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  curve = new Curve($("se-curve"));
  $("token").value = token;
  $("token-box").addEventListener("submit", (e) => e.preventDefault());  // Enter: the change
  $("token").addEventListener("change", () => {
    token = $("token").value.trim();
    sessionStorage.setItem("aloha-token", token);
    loadResources();
    refreshJobs();
  });
  $("analyze-form").addEventListener("submit", analyze);
  $("security-form").addEventListener("submit", security);
  $("an-upload").addEventListener("change", (e) => {
    if (e.target.files.length) upload(e.target.files[0]);
  });
  $("jobs-refresh").addEventListener("click", refreshJobs);
  loadResources();
  refreshJobs();
  setInterval(refreshJobs, 2000);
});
