// loracle's web page: plain JavaScript, no build step, no third-party code.
// Everything comes from the same server: /api/* (knowledge base) and /v1/* (OpenAI-compatible model API).
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { model: "", pages: [], adapters: [], graph: null, abort: null, modeChosen: false };

// ---- talking to the server -------------------------------------------------------------------------------
function authHeaders() {
  const token = localStorage.getItem("loracle-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (response.status === 401) {
    $("#token-bar").hidden = false;
    throw new Error("this server needs a token");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error.message;
    } catch (_) { /* not a JSON error body */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

const getJSON = async (path) => (await api(path)).json();
const postJSON = (path, body, signal) =>
  api(path, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" }, signal });

function showError(error) {
  const box = $("#error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

// ---- routing: #/page/<id>, #/graph, #/ask, #/adapters, #/eval ----------------------------------------------
async function route() {
  showError(null);
  const [, view = "", ...rest] = location.hash.replace(/^#/, "").split("/");
  const name = view || "page";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === name);
  try {
    if (name === "page") await showPage(decodeURIComponent(rest.join("/")));
    else if (name === "graph") await showGraph();
    else if (name === "ask") await showAsk();
    else if (name === "adapters") await showAdapters();
    else if (name === "eval") await showEval();
  } catch (error) {
    showError(error);
  }
}

// ---- wiki pages ------------------------------------------------------------------------------------------
const pageLink = (id, title) => el("a", { href: `#/page/${encodeURIComponent(id)}`, "data-page": id }, title || id);

async function loadPages() {
  state.pages = (await getJSON("/api/pages")).pages;
  const list = $("#page-list ul");
  list.replaceChildren(...state.pages.map((p) => el("li", {}, pageLink(p.id, p.title))));
}

async function showPage(id) {
  if (!state.pages.length) await loadPages();
  if (!id) {
    const start = state.pages.find((p) => p.id === "index.md") || state.pages[0];
    if (!start) {
      $("#page-body").replaceChildren(el("p", { class: "muted" }, "This knowledge base has no wiki pages yet."));
      return;
    }
    id = start.id;
  }
  const page = await getJSON(`/api/pages/${encodeURIComponent(id)}`);
  $("#page-body").innerHTML = page.html; // rendered server-side from markdown with raw HTML escaped
  $("#page-raw pre").textContent = page.raw;
  document.title = `${page.title} — loracle`;
  const backlinks = page.backlinks.map((b) => el("li", {}, pageLink(b.id, b.title)));
  $("#backlinks ul").replaceChildren(...(backlinks.length ? backlinks : [el("li", { class: "muted" }, "no pages link here")]));
  for (const link of document.querySelectorAll("#page-list a")) link.classList.toggle("active", link.dataset.page === id);
  showFindings(id);
}

async function showFindings(id) {
  // lint's structural findings (broken links, orphans, duplicates...) for the page on show
  const list = $("#findings ul");
  try {
    const report = await getJSON("/api/lint");
    const mine = report.findings.filter((f) => f.page === id && !f.fixed);
    list.replaceChildren(...(mine.length ? mine.map((f) => el("li", { class: "finding" }, el("strong", {}, f.kind), ` ${f.message}`))
      : [el("li", { class: "muted" }, "none")]));
  } catch (error) {
    list.replaceChildren(el("li", { class: "muted" }, `lint unavailable: ${error.message}`));
  }
}

// ---- search as you type ----------------------------------------------------------------------------------
let searchTimer = null;
let searchSeq = 0;

function onSearchInput() {
  clearTimeout(searchTimer);
  const query = $("#search").value.trim();
  if (!query) {
    $("#search-results").hidden = true;
    return;
  }
  searchTimer = setTimeout(() => runSearch(query), 150);
}

async function runSearch(query) {
  const seq = ++searchSeq;
  try {
    const { hits } = await getJSON(`/api/search?q=${encodeURIComponent(query)}&n=8`);
    if (seq !== searchSeq) return; // a newer query was typed meanwhile
    const list = $("#search-results");
    const items = hits.map((hit) =>
      el("li", {}, el("a", { href: `#/page/${encodeURIComponent(hit.path)}`, onclick: closeSearch },
        el("strong", {}, hit.title || hit.id), el("span", { class: "snippet" }, hit.snippet || ""))));
    list.replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "no matches")]));
    list.hidden = false;
  } catch (error) {
    showError(error);
  }
}

function closeSearch() {
  $("#search-results").hidden = true;
}

// ---- the link graph: a small force-directed layout in SVG -----------------------------------------------
async function showGraph() {
  const data = await getJSON("/api/graph");
  const svg = $("#graph");
  const width = svg.clientWidth || 900;
  const height = svg.clientHeight || 600;
  const ns = "http://www.w3.org/2000/svg";
  const nodes = data.nodes.map((n, i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, data.nodes.length);
    return { ...n, x: width / 2 + (width / 3) * Math.cos(angle), y: height / 2 + (height / 3) * Math.sin(angle), vx: 0, vy: 0 };
  });
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const edges = data.edges.filter((e) => byId.has(e.source) && byId.has(e.target));
  layout(nodes, edges.map((e) => [byId.get(e.source), byId.get(e.target)]), width, height);

  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const lines = edges.map((e) => {
    const line = document.createElementNS(ns, "line");
    line.setAttribute("class", "edge");
    svg.append(line);
    return [line, byId.get(e.source), byId.get(e.target)];
  });
  const groups = nodes.map((node) => {
    const group = document.createElementNS(ns, "g");
    group.setAttribute("class", "node");
    group.dataset.page = node.id;
    const circle = document.createElementNS(ns, "circle");
    circle.setAttribute("r", 7);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 10);
    label.setAttribute("y", 4);
    label.textContent = node.title;
    group.append(circle, label);
    svg.append(group);
    enableDrag(svg, group, node, draw);
    return [group, node];
  });
  function draw() {
    for (const [line, a, b] of lines) {
      line.setAttribute("x1", a.x); line.setAttribute("y1", a.y);
      line.setAttribute("x2", b.x); line.setAttribute("y2", b.y);
    }
    for (const [group, node] of groups) group.setAttribute("transform", `translate(${node.x},${node.y})`);
  }
  draw();
}

function layout(nodes, links, width, height) {
  const k = Math.sqrt((width * height) / Math.max(1, nodes.length)) * 0.6;
  for (let step = 0; step < 300; step++) {
    const cooling = 1 - step / 300;
    for (const a of nodes) { a.vx = 0; a.vy = 0; }
    for (let i = 0; i < nodes.length; i++) {
      for (let j = i + 1; j < nodes.length; j++) {
        const a = nodes[i], b = nodes[j];
        let dx = a.x - b.x, dy = a.y - b.y;
        const d2 = Math.max(dx * dx + dy * dy, 1);
        const force = (k * k) / d2;
        a.vx += dx * force; a.vy += dy * force; b.vx -= dx * force; b.vy -= dy * force;
      }
    }
    for (const [a, b] of links) {
      const dx = a.x - b.x, dy = a.y - b.y;
      const d = Math.max(Math.sqrt(dx * dx + dy * dy), 1);
      const force = d / k;
      a.vx -= dx * force; a.vy -= dy * force; b.vx += dx * force; b.vy += dy * force;
    }
    for (const n of nodes) {
      n.vx += (width / 2 - n.x) * 0.01; n.vy += (height / 2 - n.y) * 0.01;
      const speed = Math.sqrt(n.vx * n.vx + n.vy * n.vy) || 1;
      const move = Math.min(speed, 10 * cooling + 0.5);
      n.x = Math.min(width - 60, Math.max(20, n.x + (n.vx / speed) * move));
      n.y = Math.min(height - 20, Math.max(20, n.y + (n.vy / speed) * move));
    }
  }
}

function enableDrag(svg, group, node, draw) {
  let dragging = false, moved = false;
  group.addEventListener("pointerdown", (event) => { dragging = true; moved = false; group.setPointerCapture(event.pointerId); });
  group.addEventListener("pointermove", (event) => {
    if (!dragging) return;
    const point = svg.createSVGPoint();
    point.x = event.clientX; point.y = event.clientY;
    const local = point.matrixTransform(svg.getScreenCTM().inverse());
    node.x = local.x; node.y = local.y; moved = true;
    draw();
  });
  group.addEventListener("pointerup", () => {
    dragging = false;
    if (!moved) location.hash = `#/page/${encodeURIComponent(node.id)}`;
  });
}

// ---- asking: streamed from /v1/chat/completions, or a learner's answer with citations from /api/ask -------
const chosenMode = () => document.querySelector("input[name=mode]:checked").value;

function setMode(mode) {
  document.querySelector(`input[name=mode][value=${mode}]`).checked = true;
  $("#adapter-choice").hidden = !["chosen", "context"].includes(mode);
}

async function showAsk() {
  state.adapters = (await getJSON("/api/adapters")).adapters;
  // until the user picks: the compiled adapters when there are any, else the base model
  if (!state.modeChosen) setMode(state.adapters.length ? "adapters" : "base");
  const box = $("#adapter-choice");
  const chosen = new Set([...box.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value));
  box.replaceChildren(...(state.adapters.length ? state.adapters.map((a) =>
    el("label", { class: "adapter" },
      el("input", { type: "checkbox", value: a.id, ...(chosen.has(a.id) ? { checked: "" } : {}) }),
      ` ${a.id} `,
      el("input", { type: "number", class: "weight", step: "0.1", min: "-4", max: "4", value: "1", "aria-label": `weight of ${a.id}` })))
    : [el("p", { class: "muted" }, "No adapters yet: run `loracle compile`.")]));
}

function chosenAdapters() {
  return [...document.querySelectorAll("#adapter-choice label.adapter")]
    .filter((label) => label.querySelector("input[type=checkbox]").checked)
    .map((label) => ({ id: label.querySelector("input[type=checkbox]").value, weight: Number(label.querySelector(".weight").value || 1) }));
}

async function ask(event) {
  event.preventDefault();
  const question = $("#question").value.trim();
  if (!question) return;
  const mode = chosenMode();
  const adapters = ["chosen", "context"].includes(mode) ? chosenAdapters() : [];
  if (mode === "chosen" && !adapters.length) {
    showError("choose at least one adapter");
    return;
  }
  showError(null);
  $("#answer-box").hidden = false;
  $("#answer").textContent = "";
  $("#citations").replaceChildren();
  $("#answer-meta").textContent = "thinking…";
  $("#ask-button").disabled = true;
  $("#stop-button").hidden = false;
  state.abort = new AbortController();
  const started = performance.now();
  try {
    if (mode === "context") await askLearner(question, "context", adapters);
    else if (mode === "wiki") await askWiki(question);
    else if (mode === "adapters") await streamChat(question, [], started, "kb");
    else await streamChat(question, adapters, started, state.model);
    const how = {
      adapters: "from the compiled adapters", context: "retrieval (context learner)", wiki: "the wiki",
      base: "base model", chosen: "with chosen adapters",
    }[mode];
    $("#answer-meta").textContent = `${how}, ${((performance.now() - started) / 1000).toFixed(1)} s`;
  } catch (error) {
    if (error.name !== "AbortError") showError(error);
    $("#answer-meta").textContent = error.name === "AbortError" ? "stopped" : "failed";
  } finally {
    $("#ask-button").disabled = false;
    $("#stop-button").hidden = true;
  }
}

async function streamChat(question, adapters, started, model) {
  const body = {
    model,
    messages: [{ role: "user", content: question }],
    stream: true,
    temperature: 0,
    adapters,
  };
  const response = await postJSON("/v1/chat/completions", body, state.abort.signal);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let first = true;
  let answered = null; // model "kb": what answered, in the stream's first chunk
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 2);
      if (!event.startsWith("data:")) continue;
      const data = event.slice(5).trim();
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.loracle) answered = chunk.loracle;
      const piece = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
      if (piece) {
        if (first) { $("#answer-meta").textContent = `first token after ${((performance.now() - started) / 1000).toFixed(2)} s…`; first = false; }
        $("#answer").textContent += piece;
      }
    }
  }
  if (answered) {
    showRouted(answered);
    return;
  }
  // with adapters, the sources are the pages the adapters were compiled from
  const byId = new Map(state.adapters.map((a) => [a.id, a]));
  $("#citations").replaceChildren(...adapters.map((a) => {
    return el("li", {}, `adapter ${a.id} (weight ${a.weight}) compiled from `, sourceOf(byId.get(a.id) || {}));
  }));
  if (!adapters.length) $("#citations").replaceChildren(el("li", { class: "muted" }, "none: the base model answered from its own weights"));
}

// the documents whose adapters answered (links to their pages), then any warning (a stale adapter, ...)
function showRouted(answered) {
  const documents = answered.documents.map((d) => el("li", { class: "document" },
    d.page ? pageLink(d.page, d.title) : (d.path || d.title), el("span", { class: "snippet" }, ` adapter ${d.adapter}`)));
  const warnings = answered.warnings.map((w) => el("li", { class: "warning" }, w));
  const none = el("li", { class: "muted" }, "no adapter matched: the base model answered from its own weights");
  $("#citations").replaceChildren(...(documents.length ? documents : [none]), ...warnings);
}

async function askLearner(question, learner, adapters) {
  const answer = await (await postJSON("/api/ask", { question, learner, adapters }, state.abort.signal)).json();
  $("#answer").textContent = answer.text;
  const items = answer.citations.map((c) =>
    el("li", {}, c.page ? pageLink(c.page, c.title) : c.title, el("span", { class: "snippet" }, ` ${c.snippet}`)));
  $("#citations").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "no passages matched")]));
}

async function askWiki(question) {
  const answer = await (await postJSON("/api/query", { question }, state.abort.signal)).json();
  $("#answer").textContent = answer.text;
  $("#citations").replaceChildren(...answer.citations.map((c) =>
    el("li", {}, pageLink(c.page, c.title),
      ...c.lines.map((l) => el("span", { class: "snippet" }, `${l.source}:${l.line}: ${l.text}`)))));
}

// ---- adapters and eval -----------------------------------------------------------------------------------
function sourceOf(adapter) {
  const m = adapter.manifest || {};
  if (adapter.page) return pageLink(adapter.page, m.title || adapter.page);
  return adapter.source_path || m.document_id || "an unknown source";
}

function size(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function age(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 129600) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

async function showAdapters() {
  const { adapters, unusable = [] } = await getJSON("/api/adapters");
  const rows = adapters.map((a) => {
    const m = a.manifest || {};
    const stale = a.stale === true ? "stale" : a.stale === false ? "current" : "—";
    return el("tr", {},
      el("td", {}, a.id),
      el("td", {}, sourceOf(a)),
      el("td", {}, m.learner || "—"),
      el("td", { class: "num" }, size(a.size_bytes)),
      el("td", { class: "num" }, age(a.age_s)),
      el("td", { class: a.stale ? "stale" : "" }, `${stale}${a.loaded ? ", loaded" : ""}`));
  });
  // folders in adapters/ the server does not serve (a bad name, missing files), so that they are not a mystery
  rows.push(...unusable.map((u) => el("tr", { class: "unusable" },
    el("td", {}, u.folder), el("td", { colspan: 5, class: "muted" }, `not served: ${u.problem}`))));
  $("#adapter-table tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No adapters yet: run `loracle compile`."))]));
}

const pct = (v) => (v === null || v === undefined ? "—" : `${Math.round(100 * v)}%`);
const num = (v, digits) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits));

// A learner's share of the ceiling, with its 95% interval over the questions when the eval computed one.
function ofCeiling(run, ceiling) {
  if (run.accuracy === null || !ceiling) return "—";
  const span = run.ceiling_interval;
  return pct(run.accuracy / ceiling) + (span ? ` (${pct(span[0])}–${pct(span[1])})` : "");
}

async function showEval() {
  let result;
  try {
    result = await getJSON("/api/eval");
  } catch (error) {
    if (error.status !== 404) throw error;
    $("#eval-summary").textContent = "No eval results yet: run `loracle eval`.";
    $("#eval-table tbody").replaceChildren();
    $("#eval-chart").hidden = true;
    return;
  }
  $("#eval-summary").textContent = `${result.model}: ${result.documents.length} documents, ${result.questions} questions. floor = base model without the document; ceiling = with it in context; of ceiling in brackets: its 95% interval over these questions.`;
  const ceiling = (result.runs.find((r) => r.name === "ceiling") || {}).accuracy;
  $("#eval-table tbody").replaceChildren(...result.runs.map((r) => el("tr", { class: r.kind },
    el("td", {}, r.name),
    el("td", { class: "num" }, r.accuracy === null ? `failed: ${r.error}` : `${pct(r.accuracy)} (${r.correct}/${r.total})`),
    el("td", { class: "num" }, ofCeiling(r, ceiling)),
    el("td", { class: "num" }, num(r.f1, 2)),
    el("td", { class: "num" }, num(r.learn_seconds_per_doc, 1)),
    el("td", { class: "num" }, num(r.answer_seconds_per_question, 2)),
    el("td", { class: "num" }, r.bytes_on_disk === null ? "—" : size(r.bytes_on_disk)),
    el("td", { class: "num" }, num(r.forgetting_ratio, 3)))));
  const image = await (await api("/api/eval/chart.png")).blob(); // fetched with the token, unlike a plain <img src>
  const chart = $("#eval-chart");
  if (chart.src) URL.revokeObjectURL(chart.src);
  chart.src = URL.createObjectURL(image);
  chart.hidden = false;
}

// ---- start -----------------------------------------------------------------------------------------------
async function start() {
  $("#search").addEventListener("input", onSearchInput);
  $("#search").addEventListener("keydown", (event) => { if (event.key === "Escape") closeSearch(); });
  document.addEventListener("click", (event) => { if (!event.target.closest(".search")) closeSearch(); });
  $("#ask-form").addEventListener("submit", ask);
  $("#stop-button").addEventListener("click", () => state.abort && state.abort.abort());
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    // adapters can be chosen for the chosen mode and, optionally, under the context learner
    radio.addEventListener("change", () => { state.modeChosen = true; setMode(chosenMode()); });
  }
  $("#token-save").addEventListener("click", () => {
    localStorage.setItem("loracle-token", $("#token").value);
    $("#token-bar").hidden = true;
    boot();
  });
  window.addEventListener("hashchange", route);
  await boot();
}

async function boot() {
  try {
    const info = await getJSON("/api/info");
    state.model = info.model;
    $("#model-name").textContent = info.model;
  } catch (error) {
    showError(error);
    return;
  }
  await route();
}

start();
