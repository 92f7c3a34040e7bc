// sempairs review page: one pair at a time (or a grid), keyboard first, every decision sent at once.
"use strict";

const $ = (id) => document.getElementById(id);
const PREFETCH = 6;   // pairs ahead whose images are loaded and decoded before they are shown
const GRID = 24;      // pairs per grid page
const KEEP = 240;     // prefetched images kept in memory
const state = { queue: [], byPos: new Map(), i: 0, undo: [], grid: false, pending: 0, counts: null, shown: 0 };
const images = new Map();  // url -> HTMLImageElement, loaded (and decoded) ahead of time
let chain = Promise.resolve();  // writes go out one after another, in the order they were made

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const imageUrl = (index) => `api/image/${index}`;
const current = () => state.queue[state.i];
const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

function requestId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function toast(text, error = false) {
  const el = $("toast");
  el.textContent = text;
  el.className = "show" + (error ? " error" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.className = ""; }, error ? 6000 : 2500);
}

// Every write carries the session's secret, which the server wrote into this page (no other page can send it).
const SECRET = document.querySelector('meta[name="sempairs-secret"]').content;

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json", "X-Sempairs-Secret": SECRET }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// ------------------------------------------------------------------ saving

function setPending(delta) {
  state.pending += delta;
  const el = $("save-state");
  el.textContent = state.pending ? `saving ${state.pending}…` : "saved";
  el.className = state.pending ? "saving" : "saved";
}

// Send a write; a failed connection is retried with the same request id (the server applies it once),
// a refusal (4xx) is reported and not retried.
function send(path, body, done) {
  setPending(+1);
  chain = chain.then(async () => {
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await api(path, body);
        state.counts = result.counts;
        done(result, null);
        break;
      } catch (error) {
        if (error.status && error.status < 500) { done(null, error); break; }
        toast(`not saved yet (${error.message}); retrying`, true);
        await sleep(Math.min(5000, 200 * 2 ** attempt));
      }
    }
    setPending(-1);
    renderProgress();
  });
}

function decideAt(pair, decision) {
  const rid = requestId();
  const before = pair.decision;
  state.undo.push({ pos: pair.pos, rid, before });
  pair.decision = decision;
  send("api/decide", { pair: pair.pos, decision, request_id: rid }, (result, error) => {
    if (error) { pair.decision = before; toast(error.message, true); refresh(); }
  });
}

function undo() {
  const last = state.undo.pop();
  if (!last) { toast("nothing to undo"); return; }
  const pair = state.byPos.get(last.pos);
  if (pair) pair.decision = last.before;
  send("api/undo", { undo: last.rid, request_id: requestId() }, (result, error) => {
    if (error) { toast(error.message, true); reload(true); return; }
    if (pair) pair.decision = result.decision;
    refresh();
  });
  const at = state.queue.indexOf(pair);
  if (state.grid) renderGrid();
  else if (at >= 0) go(at);
  else refresh();
}

// ------------------------------------------------------------------ images

function prime(url) {
  let img = images.get(url);
  if (img) { images.delete(url); images.set(url, img); return img; }   // most recently used last
  img = new Image();
  img.src = url;
  img.decode().catch(() => {});
  images.set(url, img);
  if (images.size > KEEP) images.delete(images.keys().next().value);
  return img;
}

function prefetch(from, count) {
  for (const pair of state.queue.slice(from, from + count)) { prime(imageUrl(pair.a)); prime(imageUrl(pair.p)); }
}

// ------------------------------------------------------------------ rendering

function renderProgress() {
  const n = state.queue.length;
  const decided = state.queue.reduce((k, pair) => k + (pair.decision !== null), 0);
  $("bar").style.width = n ? `${(100 * decided) / n}%` : "0";
  const c = state.counts;
  const all = c ? ` · all ${c.pairs}: ${c.accept} accepted, ${c.reject} rejected, ${c.skip} skipped` : "";
  $("progress-text").textContent = `${decided}/${n} in view${all}`;
}

function caption(role, id, cls) {
  return `<span class="cls">${cls ? escapeHtml(cls) : "class unknown"}</span><br><span class="id">${role} · ${escapeHtml(id)}</span>`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

const VERDICT = { accept: "accepted", reject: "rejected", skip: "skipped" };

function badge(decision) {
  return `<span class="badge ${decision || ""}">${VERDICT[decision] || "not reviewed"}</span>`;
}

function renderMeta(pair) {
  const label = pair.label ? ` · label ${escapeHtml(pair.label)}` : "";
  $("meta").innerHTML = `score <span class="score">${fmt(pair.score)}</span> · source ${escapeHtml(pair.source)}${label}` +
    ` · pair ${pair.pos + 1} (${state.i + 1} of ${state.queue.length} in view) · ${badge(pair.decision)}`;
}

// Show the current pair once both images are decoded, then report when it was painted.
async function show() {
  const ticket = ++state.shown;
  const pair = current();
  const finished = !pair && state.queue.length > 0;
  $("done").hidden = !finished || state.grid;
  $("pair-view").hidden = !pair || state.grid;
  renderProgress();
  if (!pair) { if (!state.queue.length) toast("no pair matches these filters"); return; }
  const a = prime(imageUrl(pair.a));
  const p = prime(imageUrl(pair.p));
  const ready = (img) => (img.complete && img.naturalWidth ? null : img.decode());
  const waiting = [ready(a), ready(p)].filter(Boolean);
  if (waiting.length) {
    await Promise.all(waiting).catch(() => {});
    if (ticket !== state.shown) return;  // a later key press already moved on
  }
  $("img-a").src = a.src;
  $("img-p").src = p.src;
  $("cap-a").innerHTML = caption("anchor", pair.a_id, pair.a_class);
  $("cap-p").innerHTML = caption("positive", pair.p_id, pair.p_class);
  renderMeta(pair);
  requestAnimationFrame(() => setTimeout(() => {  // painted: report it, then load what comes next
    document.dispatchEvent(new CustomEvent("pairshown", { detail: { pos: pair.pos, t: performance.now() } }));
    prefetch(state.i + 1, PREFETCH);
  }));
}

function refresh() {
  if (state.grid) renderGrid();
  else if (current()) renderMeta(current());
  renderProgress();
}

function go(i) {
  state.i = Math.max(0, Math.min(i, state.queue.length));
  show();
}

function nextUnreviewed() {
  const n = state.queue.length;
  for (let k = 1; k <= n; k++) {
    const j = (state.i + k) % n;
    if (state.queue[j].decision === null) { go(j); return; }
  }
  toast("every pair in this view has a decision");
  go(n);
}

function renderGrid() {
  const grid = $("grid");
  grid.replaceChildren();
  const page = state.queue.slice(state.i, state.i + GRID);
  for (const pair of page) {
    const tile = document.createElement("div");
    tile.className = `tile ${pair.decision || ""}`;
    tile.dataset.pos = pair.pos;
    tile.innerHTML = `<div class="imgs"><img src="${imageUrl(pair.a)}" alt=""><img src="${imageUrl(pair.p)}" alt=""></div>` +
      `<div class="info">${escapeHtml(pair.a_class || "")} · ${fmt(pair.score)}` +
      `${pair.decision ? ` · <span class="verdict">${VERDICT[pair.decision]}</span>` : ""}</div>`;
    tile.addEventListener("click", () => { decideAt(pair, pair.decision === "reject" ? "accept" : "reject"); renderGrid(); });
    grid.append(tile);
  }
  $("done").hidden = page.length > 0;
  $("grid-view").hidden = page.length === 0;
  prefetch(state.i + GRID, GRID);
  renderProgress();
}

function acceptRest() {
  for (const pair of state.queue.slice(state.i, state.i + GRID)) if (pair.decision === null) decideAt(pair, "accept");
  turnPage(+1);
}

function turnPage(direction) {
  state.i = Math.max(0, Math.min(state.i + direction * GRID, state.queue.length));
  renderGrid();
}

function setGrid(on) {
  state.grid = on;
  $("toggle-grid").textContent = on ? "pair view" : "grid view";
  $("pair-view").hidden = on;
  $("grid-view").hidden = !on;
  if (on) renderGrid(); else show();
}

// ------------------------------------------------------------------ stats

function statsTable(title, rows, name) {
  const head = ["", "accepted", "rejected", "skipped", "unreviewed", "precision", "95 % interval"];
  const cells = (r) => [r.accept, r.reject, r.skip, r.unreviewed, fmt(r.precision),
    r.ci_low === null ? "–" : `${fmt(r.ci_low)}–${fmt(r.ci_high)}`];
  const extra = rows.length && rows[0].at_least ? ["precision ≥ from", "interval ≥ from"] : [];
  const body = rows.map((r) => `<tr><td>${escapeHtml(name(r))}</td>${cells(r).concat(r.at_least ? cells(r.at_least).slice(4) : [])
    .map((c) => `<td>${c}</td>`).join("")}</tr>`).join("");
  return `<h3>${title}</h3><table><tr>${head.concat(extra).map((h) => `<th>${h}</th>`).join("")}</tr>${body}</table>`;
}

async function showStats() {
  try {
    const stats = await api("api/stats");
    let html = statsTable("overall", [stats.overall], () => "all");
    html += statsTable("per class", stats.per_class, (r) => r.class);
    if (stats.per_bin.length) html += statsTable("per score bin", stats.per_bin, (r) => `${fmt(r.score_from)}–${fmt(r.score_to)}`);
    $("stats-body").innerHTML = html;
    $("stats").showModal();
  } catch (error) { toast(error.message, true); }
}

// ------------------------------------------------------------------ loading

function params() {
  const form = new FormData($("controls"));
  return new URLSearchParams([...form.entries()].filter(([, v]) => v !== ""));
}

// Fetch the queue for the current filters; keepPos stays on the pair shown, else the first unreviewed one.
async function reload(keepPos = false) {
  const pos = current() ? current().pos : null;
  let data;
  try { data = await api(`api/queue?${params()}`); } catch (error) { toast(error.message, true); return; }
  state.queue = data.pairs;
  state.counts = data.counts;
  state.byPos = new Map(state.queue.map((pair) => [pair.pos, pair]));
  let at = keepPos && pos !== null ? state.queue.findIndex((pair) => pair.pos === pos) : -1;
  if (at < 0) at = state.queue.findIndex((pair) => pair.decision === null);
  state.i = at < 0 ? state.queue.length : at;
  if (state.grid) renderGrid(); else show();
}

function fillSelect(name, values) {
  const select = $("controls").elements[name];
  for (const value of values) select.append(new Option(value, value));
}

async function start() {
  const info = await api("api/info").catch((error) => { toast(error.message, true); return null; });
  if (!info) return;
  const base = (path) => path.split(/[\\/]/).pop();
  $("file").textContent = `${base(info.pair_file)} · ${base(info.dataset)} (${info.split}) · ${info.reviewer}`;
  $("file").title = `${info.pair_file}\n${info.dataset}`;
  fillSelect("cls", info.classes);
  fillSelect("source", info.sources);
  await reload();
}

const KEYS = {
  a: () => current() && (decideAt(current(), "accept"), go(state.i + 1)),
  r: () => current() && (decideAt(current(), "reject"), go(state.i + 1)),
  s: () => current() && (decideAt(current(), "skip"), go(state.i + 1)),
  u: undo,
  n: nextUnreviewed,
  ArrowRight: () => go(state.i + 1),
  ArrowLeft: () => go(state.i - 1),
};
const GRID_KEYS = { u: undo, Enter: acceptRest, ArrowRight: () => turnPage(+1), ArrowLeft: () => turnPage(-1) };

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea, dialog") || event.altKey || event.metaKey) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (event.ctrlKey) { if (key === "z") { event.preventDefault(); undo(); } return; }
  if (key === "g") { setGrid(!state.grid); return; }
  if (key === "t") { showStats(); return; }
  const action = (state.grid ? GRID_KEYS : KEYS)[key === "Backspace" ? "u" : key];
  if (action) { event.preventDefault(); action(); }
});
document.querySelectorAll("button[data-key]").forEach((button) => {
  button.addEventListener("click", () => KEYS[button.dataset.key]());
});
$("controls").addEventListener("submit", (event) => { event.preventDefault(); reload(); document.activeElement.blur(); });
$("toggle-grid").addEventListener("click", () => setGrid(!state.grid));
$("show-stats").addEventListener("click", showStats);
$("done-stats").addEventListener("click", showStats);
// A closed dialog hands the keys back to the page (focus may stay on its close button, which the key handler skips).
$("stats").addEventListener("close", () => { if (document.activeElement?.closest("dialog")) document.activeElement.blur(); });
$("accept-rest").addEventListener("click", acceptRest);
// Another tab may have decided pairs: take the server's decisions when this tab comes back.
window.addEventListener("focus", () => { if (!state.pending) reload(true); });
window.addEventListener("beforeunload", (event) => { if (state.pending) event.preventDefault(); });
start();
