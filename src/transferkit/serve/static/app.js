// transferkit serve: the page. Plain JS, no libraries; every value from the server is set as text, never HTML.
"use strict";

const KEY_STORE = "transferkit-api-key";
const $ = (id) => document.getElementById(id);
let apiKey = sessionStorage.getItem(KEY_STORE) || "";
let model = null;

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  if (apiKey) h["Authorization"] = "Bearer " + apiKey;
  return h;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function showError(msg) { $("error").textContent = msg || ""; }

async function readJson(resp) {
  try { return await resp.json(); } catch (e) { return { error: "HTTP " + resp.status }; }
}

function askForKey(message) {
  $("main").hidden = true;
  $("key-panel").hidden = false;
  $("summary").textContent = "An API key is needed.";
  $("key-error").textContent = message || "";
  $("api-key").focus();
}

async function loadModel() {
  const resp = await fetch("/v1/model", { headers: authHeaders() });
  const body = await readJson(resp);
  if (resp.status === 401) {
    askForKey(apiKey ? body.error : "");
    return;
  }
  if (!resp.ok) {
    $("summary").textContent = body.error || "The model could not be described (HTTP " + resp.status + ").";
    return;
  }
  model = body;
  $("key-panel").hidden = true;
  $("main").hidden = false;
  renderModel(model);
}

function fmt(v, count) { return typeof v === "number" ? (count ? String(v) : v.toFixed(4)) : String(v); }

function renderModel(m) {
  $("run-name").textContent = m.run;
  $("summary").textContent = m.modality + " classifier" + (m.ready ? "" : " (warming up)") +
    " \u00b7 engine " + m.engine.name + " \u00b7 " + (m.labels ? m.labels.length + " labels" : m.task);
  $("image-input").hidden = m.modality !== "image";
  $("text-input").hidden = m.modality !== "text";
  const facts = $("facts");
  facts.replaceChildren();
  const rows = [["run", m.run], ["backbone", m.backbone], ["strategy", m.strategy], ["task", m.task],
                ["engine", m.engine.ran ? m.engine.name + " (ran " + m.engine.ran + ")" : m.engine.name],
                ["created", m.created || "-"]];
  for (const [k, v] of rows) { facts.append(el("dt", k), el("dd", v)); }
  const labels = $("labels");
  labels.replaceChildren(...(m.labels || []).map((l) => el("li", l)));
  const tbody = $("metrics").querySelector("tbody");
  tbody.replaceChildren();
  const test = (m.metrics && m.metrics.test) || {}, val = (m.metrics && m.metrics.val) || {};
  for (const name of Object.keys(Object.assign({}, test, val))) {
    const tr = el("tr");
    const count = name === "n";
    tr.append(el("td", name), el("td", name in test ? fmt(test[name], count) : "-"),
              el("td", name in val ? fmt(val[name], count) : "-"));
    tbody.append(tr);
  }
  const lineage = $("lineage");
  lineage.replaceChildren();
  if (!m.lineage || !m.lineage.length) lineage.append(el("li", "trained directly from " + m.backbone));
  for (const step of m.lineage || []) {
    lineage.append(el("li", Object.entries(step).map(([k, v]) => k + ": " + (typeof v === "object" ? JSON.stringify(v) : v)).join(", ")));
  }
}

function topK() { const k = parseInt($("top-k").value, 10); return Number.isFinite(k) && k > 0 ? k : 5; }

function renderPrediction(pred) {
  const out = $("results");
  out.replaceChildren();
  if (!pred.top_k) {  // regression
    out.append(el("p", "prediction: " + fmt(pred.prediction), "prediction"));
    out.dataset.state = "done";
    return;
  }
  pred.top_k.forEach((t, i) => {
    const bar = el("div", undefined, "bar" + (i === 0 ? " best" : ""));
    bar.dataset.label = String(t.label);
    bar.dataset.probability = String(t.probability);
    const name = el("div", undefined, "name");
    name.append(el("span", t.label, "label"), el("span", (100 * t.probability).toFixed(1) + "%", "pct"));
    const track = el("div", undefined, "track");
    const fill = el("div", undefined, "fill");
    fill.style.width = Math.max(0.5, 100 * t.probability).toFixed(2) + "%";
    track.append(fill);
    bar.append(name, track);
    out.append(bar);
  });
  out.dataset.state = "done";
}

async function predict(init) {
  showError("");
  $("results").dataset.state = "pending";
  const resp = await fetch("/v1/predict", Object.assign({ method: "POST" }, init));
  const body = await readJson(resp);
  if (resp.status === 401) { askForKey(body.error); return; }
  if (!resp.ok) { showError(body.error || "HTTP " + resp.status); $("results").dataset.state = "error"; return; }
  renderPrediction(body.predictions[0]);
}

function sendImage(file) {
  if (!file) return;
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const form = new FormData();
  form.append("images", file, file.name || "image");
  form.append("top_k", String(topK()));
  predict({ headers: authHeaders(), body: form });
}

function sendText(text) {
  predict({ headers: authHeaders({ "Content-Type": "application/json" }),
            body: JSON.stringify({ texts: [text], top_k: topK() }) });
}

function wire() {
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    apiKey = $("api-key").value.trim();
    sessionStorage.setItem(KEY_STORE, apiKey);
    loadModel();
  });
  $("file").addEventListener("change", (ev) => sendImage(ev.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    sendImage(ev.dataTransfer.files[0]);
  });
  $("text-input").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("text").value;
    if (text.trim()) sendText(text); else showError("Paste a text first.");
  });
  $("text").addEventListener("paste", () => setTimeout(() => { if ($("text").value.trim()) sendText($("text").value); }, 0));
}

wire();
loadModel();
