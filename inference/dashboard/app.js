// streamrec dashboard: polls the JSON endpoints of /api/v1/dashboard and /api/v1/stats and draws
// plain SVG. No framework, no CDN. Rates are differences between two polls of cumulative counters.
"use strict";

const KEY_STORE = "streamrec.adminKey";
const READ_KEY_STORE = "streamrec.readKey";
const HISTORY = 60;
const series = { events: [], lag: [], e2r: [], dlq: [], req: [], p99: [] };
let previous = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

async function api(path, options = {}) {
  const readKey = sessionStorage.getItem(READ_KEY_STORE);  // with producer keys on, reads need one
  const headers = { ...(options.headers || {}), ...(readKey ? { "X-Api-Key": readKey } : {}) };
  const res = await fetch(path, { ...options, headers });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401 && !path.startsWith("/admin")) keyForm("read-key", "X-Api-Key (read)", READ_KEY_STORE);
  if (!res.ok) throw new Error(`${res.status}: ${typeof body.detail === "string" ? body.detail : res.statusText}`);
  return body;
}

function ready(name) { document.querySelector(`[data-panel="${name}"]`).dataset.state = "ready"; }
function setText(id, text) { document.getElementById(id).textContent = text; }
function fmt(x, digits = 1) { return x == null || Number.isNaN(x) ? "–" : Number(x).toFixed(digits); }

function push(name, value) {
  series[name].push(value ?? 0);
  if (series[name].length > HISTORY) series[name].shift();
}

function spark(id, values) {
  const svg = document.getElementById(id);
  const w = svg.clientWidth || 160, h = svg.clientHeight || 32, max = Math.max(...values, 1e-9);
  const pts = values.map((v, i) => `${(i / Math.max(values.length - 1, 1)) * w},${h - (v / max) * (h - 2) - 1}`);
  svg.replaceChildren();
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.append(line);
}

// p99 of the requests between two polls, from the cumulative histogram buckets
function quantile(now, before, q) {
  const prev = new Map((before || []).map(([le, n]) => [le, n]));
  const delta = now.map(([le, n]) => [le, n - (prev.get(le) || 0)]);
  const total = delta.length ? delta[delta.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  for (const [le, n] of delta) if (n >= rank) return le;
  return null;
}

async function pollOverview() {
  try {
    const o = await api("/api/v1/dashboard/overview");
    const live = document.getElementById("live");
    const s = o.stream;
    live.textContent = s ? `stream ${s.status}` : "no stream report";
    live.className = "badge " + (s && s.status === "ok" ? "ok" : "bad");
    setText("serving", o.model.run_id ? `serving ${o.model.run_id} (${o.model.policy})` : "no trained run: popularity");
    const events = Object.values(o.events_today).reduce((a, b) => a + b, 0);
    if (previous) {
      const dt = Math.max(o.at - previous.at, 1e-3);
      push("events", s ? s.events_per_s : Math.max(0, (events - previous.events) / dt));
      push("req", Math.max(0, (o.api.requests - previous.requests) / dt));
      push("dlq", s && previous.dlq != null ? Math.max(0, (s.dlq_records - previous.dlq) / dt) : 0);
      const p99 = quantile(o.api.latency_buckets, previous.buckets, 0.99);
      push("p99", p99 == null ? 0 : p99 * 1000);
      setText("req-rate", fmt(series.req[series.req.length - 1]));
      setText("p99", p99 == null ? "no requests" : p99 === Infinity ? "> 1 s" : `≤ ${fmt(p99 * 1000, 1)} ms`);
    }
    push("lag", s ? s.records_behind : 0);
    push("e2r", s ? s.event_to_redis_ms : 0);
    setText("events-rate", fmt(series.events[series.events.length - 1] ?? (s ? s.events_per_s : 0)));
    setText("lag", s ? String(s.records_behind) : "–");
    setText("e2r", s ? `${fmt(s.event_to_redis_ms, 0)} ms` : "–");
    setText("workers", s ? `${s.workers} · ${s.status}` : "none reporting");
    setText("dlq", s ? `${fmt(series.dlq[series.dlq.length - 1] ?? 0, 2)} · ${s.dlq_records}` : "–");
    setText("hit-ratio", o.cache.hit_ratio == null ? "no lookups yet" : `${fmt(o.cache.hit_ratio * 100, 1)}%`);
    setText("errors", String(o.api.errors));
    for (const [name, id] of [["events", "events-spark"], ["lag", "lag-spark"], ["e2r", "e2r-spark"], ["dlq", "dlq-spark"],
                              ["req", "req-spark"], ["p99", "p99-spark"]]) spark(id, series[name]);
    previous = { at: o.at, events, requests: o.api.requests, buckets: o.api.latency_buckets, dlq: s ? s.dlq_records : null };
    ready("stream"); ready("api");
  } catch (err) {
    const live = document.getElementById("live");
    live.textContent = `API unreachable (${err.message})`;
    live.className = "badge bad";
  }
}

async function pollQuality() {
  const g = await api("/api/v1/stats/global?days=7");
  const body = document.querySelector("#quality-table tbody");
  body.replaceChildren(...Object.entries(g.by_strategy).map(([name, c]) => el("tr", {},
    el("td", {}, name === "_" ? "(no list attributed)" : name), el("td", {}, String(c.lists ?? 0)), el("td", {}, String(c.impressions ?? 0)),
    el("td", {}, String(c.clicks ?? 0)), el("td", {}, g.ctr_by_strategy[name] == null ? "–" : `${fmt(g.ctr_by_strategy[name] * 100, 2)}%`))));
  if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "no lists served yet")));
  const svg = document.getElementById("daily-bars");
  const days = g.daily.slice().reverse(), w = svg.clientWidth || 400, h = 90, max = Math.max(...days.map(d => d.total), 1);
  svg.replaceChildren();
  days.forEach((d, i) => {
    const bw = w / days.length, bh = (d.total / max) * (h - 14);
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    Object.entries({ x: i * bw + 2, y: h - 12 - bh, width: bw - 4, height: bh }).forEach(([k, v]) => rect.setAttribute(k, v));
    const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
    Object.entries({ x: i * bw + 2, y: h - 2 }).forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = `${d.day.slice(5)}: ${d.total}`;
    svg.append(rect, label);
  });
  const alerts = await api("/api/v1/alerts?status=open");
  document.getElementById("alerts").replaceChildren(...(alerts.alerts.length ? alerts.alerts.map(a =>
    el("li", { class: "error" }, `${new Date(a.raised_at * 1000).toISOString().slice(0, 16)} ${a.message}`,
       a.acknowledged_at ? el("span", { class: "muted" }, " (acknowledged)") : ""))
    : [el("li", { class: "muted" }, "none")]));
  ready("quality");
}

function pct(x) { return x == null ? "–" : `${fmt(x * 100, 1)}%`; }

const PALETTE = ["#2f6fed", "#e8710a", "#1e8e3e", "#a142f4", "#c0392b", "#12b5cb", "#f9ab00", "#6b7385"];
const SVG_NS = "http://www.w3.org/2000/svg";

function svgNode(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
  return node;
}

// one polyline per arm over the days; a day without a value for an arm breaks nothing, it is skipped
function lineChart(id, days, arms, value, label) {
  const svg = document.getElementById(id);
  const w = svg.clientWidth || 240, h = svg.clientHeight || 90, pad = 12;
  const values = arms.flatMap(a => days.map(d => value(d.arms[a]))).filter(v => v != null);
  const max = Math.max(...values, 1e-9);
  svg.replaceChildren(svgNode("text", { x: 2, y: 9 }), svgNode("text", { x: 2, y: h - 2 }));
  svg.children[0].textContent = label(max);
  svg.children[1].textContent = days.length ? `${days[0].day.slice(5)} … ${days[days.length - 1].day.slice(5)}` : "";
  arms.forEach((arm, i) => {
    const pts = [];
    days.forEach((d, j) => {
      const v = value(d.arms[arm]);
      if (v != null) pts.push(`${pad + (j / Math.max(days.length - 1, 1)) * (w - 2 * pad)},${h - pad - (v / max) * (h - 2 * pad)}`);
    });
    if (pts.length === 1) pts.push(pts[0]);  // one day: a dot-sized line
    svg.append(svgNode("polyline", { points: pts.join(" "), stroke: PALETTE[i % PALETTE.length], "data-arm": arm }));
  });
}

function renderTrends(f) {
  const days = f.daily.slice().sort((a, b) => a.day.localeCompare(b.day));
  const arms = Object.keys(f.arms).filter(a => f.arms[a].impressions > 0 || f.arms[a].rating_count > 0);
  const rate = key => m => (m && m[key] != null ? m[key] : null);
  lineChart("trend-ctr", days, arms, rate("ctr"), max => `max ${pct(max)}`);
  lineChart("trend-positive", days, arms, rate("positive_rate"), max => `max ${pct(max)}`);
  lineChart("trend-conversion", days, arms, rate("conversion_rate"), max => `max ${pct(max)}`);
  lineChart("trend-rating", days, arms, rate("rating_mean"), max => `max ${fmt(max, 2)}`);
  document.getElementById("trend-legend").replaceChildren(...(arms.length ? arms.map((a, i) =>
    el("span", {}, el("i", { style: `background:${PALETTE[i % PALETTE.length]}` }), a === "_" ? "(no list attributed)" : a))
    : [el("span", { class: "muted" }, "no feedback yet")]));
  ready("trends");
}

function renderRatings(hist) {
  const svg = document.getElementById("ratings-bars");
  const w = svg.clientWidth || 400, h = 90, stars = ["1", "2", "3", "4", "5"];
  const max = Math.max(...stars.map(s => hist[s] || 0), 1), bw = w / stars.length;
  svg.replaceChildren(...stars.flatMap((s, i) => {
    const n = hist[s] || 0, bh = (n / max) * (h - 14);
    const label = svgNode("text", { x: i * bw + 2, y: h - 2 });
    label.textContent = `★${s}: ${n}`;
    return [svgNode("rect", { x: i * bw + 2, y: h - 12 - bh, width: bw - 4, height: bh }), label];
  }));
}

async function pollFeedback() {
  const f = await api("/api/v1/feedback/stats?days=30");
  const body = document.querySelector("#feedback-table tbody");
  body.replaceChildren(...Object.entries(f.arms).map(([arm, m]) => el("tr", {},
    el("td", {}, arm === "_" ? "(no list attributed)" : arm), el("td", {}, String(m.impressions)), el("td", {}, pct(m.ctr)),
    el("td", {}, pct(m.positive_rate)), el("td", {}, pct(m.conversion_rate)),
    el("td", {}, m.rating_mean == null ? "–" : `${fmt(m.rating_mean, 2)} (${m.rating_count})`),
    el("td", {}, m.like_ratio == null ? "–" : pct(m.like_ratio)),
    el("td", {}, m.dwell_p50_ms == null ? "–" : `${fmt(m.dwell_p50_ms / 1000, 1)} s`))));
  if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: "8", class: "muted" }, "no feedback yet")));
  const aspects = Object.entries(f.overall.aspects || {});
  renderTrends(f);
  renderRatings(f.overall.rating_histogram || {});
  setText("aspects", aspects.length ? aspects.map(([a, v]) => `${a} ${fmt(v.mean, 2)} (${v.count})`).join(" · ") : "none rated yet");
  const c = await api("/api/v1/feedback/comments?days=30&limit=5");
  document.getElementById("comments").replaceChildren(...(c.comments.length ? c.comments.map(x =>
    el("li", {}, `${x.rating != null ? "★" + x.rating + " " : ""}${x.item}: `, el("span", { class: "reason" }, x.text || "")))
    : [el("li", { class: "muted" }, "none")]));
  ready("feedback");
}

function adminHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { "X-Admin-Key": key, "content-type": "application/json" } : { "content-type": "application/json" };
}

async function admin(path, body) {
  const out = document.getElementById("admin-result");
  try {
    const res = await api(path, { method: "POST", headers: adminHeaders(), body: JSON.stringify(body || {}) });
    out.textContent = res.reason ? `${res.promoted === false ? "refused" : "done"}: ${res.reason}` : "done";
    out.className = res.promoted === false ? "error" : "muted";
    await pollModels();
  } catch (err) {
    out.textContent = `refused: ${err.message}`;
    out.className = "error";
  }
}

async function pollModels() {
  const m = await api("/api/v1/dashboard/models");
  setText("champion", m.champion || "none");
  const body = document.querySelector("#runs-table tbody");
  body.replaceChildren(...m.runs.map(r => el("tr", {},
    el("td", {}, r.champion ? `★ ${r.run_id}` : r.run_id), el("td", {}, r.policy || "–"),
    el("td", {}, r.score == null ? "–" : `${r.metric} ${fmt(r.score, 4)}`),
    el("td", {}, r.holdout && r.holdout.challenger != null ? `${fmt(r.holdout.challenger, 4)} / ${fmt(r.holdout.champion, 4)}` : "–"),
    el("td", {}, r.champion ? "" : el("button", { type: "button", class: "promote", "data-run": r.run_id,
                                                 onclick: () => admin("/admin/promote", { run: r.run_id }) }, "promote")))));
  if (!m.runs.length) body.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "no runs yet: the scheduler trains the first one")));
  document.getElementById("promotions").replaceChildren(...m.promotions.slice(0, 10).map(p =>
    el("li", {}, `${p.at} ${p.action} ${p.run_id}${p.score != null ? ` (${fmt(p.score, 4)})` : ""}`)));
  ready("models");
}

function interval(ci, f) { return ci && ci[0] != null && ci[1] != null ? ` [${f(ci[0])}, ${f(ci[1])}]` : ""; }
function signed(x) { return x == null ? "–" : `${x >= 0 ? "+" : ""}${fmt(x * 100, 1)}%`; }

function armRows(rep) {
  return rep.arms.map(a => {
    const ctr = a.metrics.ctr || {}, vs = (a.vs_control || {}).ctr;
    const lift = a.control ? "control" : !vs ? "too few data" :
      `${signed(vs.lift)}${interval(vs.lift_ci, signed)} ${vs.verdict}`;
    const policy = [a.strategy, a.run].filter(Boolean).join(" @ ") || "–";
    return el("tr", { "data-arm": a.label },
      el("td", {}, `${rep.name} · ${a.name}`), el("td", {}, pct(a.share)), el("td", {}, policy),
      el("td", {}, String(a.exposure.lists ?? 0)), el("td", {}, `${pct(ctr.value)}${interval(ctr.ci95, pct)}`),
      el("td", { class: vs && vs.significant ? (vs.verdict === "worse" ? "error" : "ok") : "" }, lift));
  });
}

async function pollExperiments() {
  const list = await api("/api/v1/experiments");
  const shown = list.experiments.slice(0, 5);
  const reports = await Promise.all(shown.map(e => api(e.report).catch(err => ({ error: err.message, ...e }))));
  const body = document.querySelector("#experiments-table tbody");
  body.replaceChildren(...reports.flatMap(rep => rep.error
    ? [el("tr", {}, el("td", { colspan: "6", class: "error" }, `${rep.name}: ${rep.error}`))]
    : [el("tr", { class: "group" }, el("td", { colspan: "6" },
        el("b", {}, rep.name), ` ${rep.kind}, ${rep.status}${rep.description ? ": " + rep.description : ""}`,
        rep.interleaving ? el("span", { class: "muted" }, ` · ${rep.interleaving.team_a} wins ${pct(rep.interleaving.win_rate)} of credited clicks${interval(rep.interleaving.ci, pct)}, p ${fmt(rep.interleaving.p_value, 3)}`) : "")),
       ...armRows(rep)]));
  if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: "6", class: "muted" },
    "no experiment yet: POST /admin/experiments or streamrec experiment create")));
  setText("experiments-note", list.experiments.length > shown.length ? `${list.experiments.length - shown.length} more: GET /api/v1/experiments` : "");
  ready("experiments");
}

function renderList(title, list) {
  if (list.error) return el("div", {}, el("h3", {}, title), el("p", { class: "error" }, list.error));
  return el("div", {}, el("h3", {}, `${title}${list.degraded ? " (degraded)" : ""}`),
    el("ol", {}, ...list.items.map(i => el("li", {}, i.item_id, " ", el("span", { class: "reason" }, i.reason || "")))));
}

async function showUser(event) {
  event && event.preventDefault();
  const id = document.getElementById("user-id").value.trim();
  const view = document.getElementById("user-view");
  try {
    const u = await api(`/api/v1/dashboard/user/${encodeURIComponent(id)}?k=5`);
    view.replaceChildren(
      el("p", {}, `seen ${u.seen_count} items; recent: ${u.recent.slice(0, 10).join(", ") || "none"}`),
      el("div", { class: "lists" }, ...Object.entries(u.lists).map(([name, list]) => renderList(name, list))));
    view.dataset.state = "ready";
  } catch (err) { view.replaceChildren(el("p", { class: "error" }, err.message)); }
}

async function showItem(event) {
  event && event.preventDefault();
  const id = document.getElementById("item-id").value.trim();
  const view = document.getElementById("item-view");
  try {
    const it = await api(`/api/v1/dashboard/item/${encodeURIComponent(id)}?k=5`);
    view.replaceChildren(
      el("p", {}, `popularity: ${it.popularity.score == null ? "none yet" : `${fmt(it.popularity.score, 1)} (rank ${it.popularity.rank})`}`),
      el("div", { class: "lists" },
        el("div", {}, el("h3", {}, "often together"), el("ol", {}, ...it.pairs.map(p => el("li", {}, `${p.item_id} (${fmt(p.count, 1)})`)))),
        el("div", {}, el("h3", {}, "similar"), it.similar_error ? el("p", { class: "muted" }, it.similar_error)
          : el("ol", {}, ...it.similar.map(s => el("li", {}, `${s.item_id} (${fmt(s.score, 3)})`))))));
    view.dataset.state = "ready";
  } catch (err) { view.replaceChildren(el("p", { class: "error" }, err.message)); }
}

async function seedExplorer() {
  // start the explorer on the most popular item, so it shows data at once; while the stream has
  // no popular item yet (a fresh stack), look again a few seconds later
  const g = await api("/api/v1/stats/global?days=1");
  const top = g.popular_items[0];
  if (top && !document.getElementById("item-id").value) {
    document.getElementById("item-id").value = top.item_id;
    await showItem();
  } else if (!top) {
    setTimeout(() => seedExplorer().catch(err => console.warn(err.message)), 3000);
  }
  ready("explorer");
}

function keyForm(id, placeholder, store, done) {
  const header = document.querySelector("header");
  if (document.getElementById(id)) return;
  const input = el("input", { id: `${id}-input`, type: "password", placeholder, autocomplete: "off" });
  const form = el("form", { id, onsubmit: e => {
    e.preventDefault(); sessionStorage.setItem(store, input.value); form.remove(); done && done();
  } }, input, el("button", {}, "save"));
  header.append(form);
}

function adminKeyForm() {
  keyForm("key-form", "X-Admin-Key", KEY_STORE, () => setText("admin-key", "admin key ✓"));
}

function every(ms, fn) { fn().catch(err => console.warn(err.message)); setInterval(() => fn().catch(err => console.warn(err.message)), ms); }

document.getElementById("user-form").addEventListener("submit", showUser);
document.getElementById("item-form").addEventListener("submit", showItem);
document.getElementById("rollback").addEventListener("click", () => admin("/admin/rollback"));
document.getElementById("admin-key").addEventListener("click", adminKeyForm);
if (sessionStorage.getItem(KEY_STORE)) setText("admin-key", "admin key ✓");
every(2000, pollOverview);
every(10000, pollQuality);
every(10000, pollModels);
every(10000, pollFeedback);
every(10000, pollExperiments);
seedExplorer().catch(err => console.warn(err.message));
