// The configsvc dashboard: polls /ui/api/state, runs the probe workload, drives the controls.
// Plain JS, no dependencies, no build step. Every value from the server is put in the page
// with textContent, never as HTML.
"use strict";

const STATE_EVERY_MS = 1000;
const PROBE_EVERY_MS = 400;
const PROBE_TIMEOUT_MS = 1500;
const WINDOW_MS = 5000;          // the rolling success rate covers this much time
const STRIP = 40;                // operations shown per namespace
const CHART_SECONDS = 60;
const COLORS = ["#3b73b9", "#2e9e4f", "#b9603b", "#7a3bb9", "#3bb9ad", "#b93b7a"];

const ui = {
  node: null,          // this node's id
  members: [],         // from the last state
  namespaces: [],      // [{name, consistency, options}]
  probes: new Map(),   // namespace -> {outcomes: [{t, ok}], lastError, running}
  chart: [],           // one sample a second: {t, cut, rates: {ns: rate|null}}
  cut: false,
  probePrefix: "_ui-probe/",
  busy: false,
  probeDecided: false,
  lastState: 0,        // when the last state arrived (ms)
};

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function fetchWithin(url, options, ms) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  try {
    return await fetch(url, { ...options, signal: abort.signal, cache: "no-store" });
  } finally {
    clearTimeout(timer);
  }
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) return `${response.status} ${body.error.code}`;
  } catch (_) { /* not JSON */ }
  return `${response.status}`;
}

// ---------------------------------------------------------------- state

async function refreshState() {
  let state;
  try {
    const response = await fetchWithin("/ui/api/state", {}, 4000);
    if (!response.ok) throw new Error(await errorText(response));
    state = await response.json();
  } catch (err) {
    showOffline(err.name === "AbortError" ? "no answer in 4 s" : String(err.message || err));
    return;
  }
  $("offline").hidden = true;
  document.body.classList.remove("stale");
  ui.lastState = Date.now();
  ui.node = state.node;
  ui.members = state.members;
  ui.probePrefix = state.probe_prefix;
  ui.cut = state.partition.cut.length > 0;
  if (!ui.probeDecided) {
    // Probing writes keys: on by default only where a control server says this is a lab.
    const wanted = new URLSearchParams(location.search).get("probe");
    $("probe-on").checked = wanted === null ? state.control.available : wanted !== "0";
    ui.probeDecided = true;
  }
  renderHealth(state);
  renderMembers(state);
  renderPartition(state);
  setNamespaces(state.namespaces);
  renderControls(state);
}

function showOffline(why) {
  $("offline").hidden = false;
  document.body.classList.add("stale");
  const since = ui.lastState ? `; what follows is from ${new Date(ui.lastState).toLocaleTimeString()}` : "";
  $("offline-why").textContent = `${why}${since}`;
  const links = $("offline-links");
  links.replaceChildren();
  for (const m of ui.members) {
    if (m.id === ui.node) continue;
    const a = el("a", m.id);
    a.href = m.api + "/ui";
    links.append(a);
  }
  for (const id of ["health-fto", "health-leader", "health-reachable"]) $(id).textContent = "?";
  $("health-status").textContent = "not answering";
  $("health-status").className = "badge unavailable";
}

function renderHealth(state) {
  const h = state.health;
  document.title = `configsvc ${state.node}: ${h.status}`;
  $("node-id").textContent = state.node;
  $("health-status").textContent = h.status;
  $("health-status").className = `badge ${h.status}`;
  const strong = h.strong || {};
  $("health-fto").textContent = strong.failures_to_outage ?? "?";
  $("health-leader").textContent = strong.leader || "none";
  const reachable = strong.reachable_voters || [];
  $("health-reachable").textContent =
    `${reachable.length} of ${(strong.voters || []).length} (quorum ${strong.quorum ?? "?"})`;
}

function renderMembers(state) {
  const body = $("members").tBodies[0];
  body.replaceChildren();
  for (const m of state.members) {
    const row = el("tr");
    row.dataset.node = m.id;
    row.dataset.role = m.role;
    const name = el("td");
    const link = el("a", m.id);
    link.href = m.api + "/ui";
    name.append(link);
    if (m.self) name.append(el("span", " (this node)", "muted"));
    const role = el("td");
    role.append(el("span", m.role, `badge role-${m.role}`));
    role.className = "role";
    const status = el("td");
    status.append(el("span", m.status, `badge ${m.status}`));
    status.className = "status";
    let process = "?";
    if (m.up === true) process = "running";
    else if (m.up === false) process = m.exit ? `stopped: ${m.exit}` : "stopped";
    const linkCell = el("td", m.self ? "—" : (m.reachable_from_here ? "connected" : "cut off"),
      m.self || m.reachable_from_here ? "link" : "link error");
    const controls = el("td", null, "ctl");
    if (state.control.available) {
      for (const [action, label] of [["kill", "kill"], ["restart", "restart"], ["isolate", "isolate"]]) {
        const b = el("button", label);
        b.dataset.action = action;
        b.addEventListener("click", () => control(`${action}/${encodeURIComponent(m.id)}`, {}, `${label} ${m.id}`));
        controls.append(b);
      }
    }
    row.append(name, role, status, el("td", m.leader || "none", "leader"),
      el("td", m.failures_to_outage ?? "—"), linkCell, el("td", process, "process"), controls);
    body.append(row);
  }
}

function renderPartition(state) {
  const p = state.partition;
  $("partition-text").textContent = p.text;
  $("partition-text").dataset.cut = p.cut.length;
  $("partition-source").textContent =
    `(from ${p.source}${p.complete ? "" : "; some nodes did not answer, the cut may be larger"})`;
  const cut = new Set(p.cut.map(([a, b]) => `${a}>${b}`));
  const ids = state.members.map((m) => m.id);
  const table = $("cut-matrix");
  table.replaceChildren();
  const head = el("tr");
  head.append(el("th", ""));
  for (const b of ids) head.append(el("th", b));
  table.append(head);
  for (const a of ids) {
    const row = el("tr");
    row.append(el("th", a));
    for (const b of ids) {
      const cell = el("td", a === b ? "" : (cut.has(`${a}>${b}`) ? "✕" : ""));
      if (a === b) cell.className = "self";
      else if (cut.has(`${a}>${b}`)) cell.className = "cut";
      cell.title = a === b ? a : `${a} → ${b}: ${cut.has(`${a}>${b}`) ? "dropped" : "flows"}`;
      row.append(cell);
    }
    table.append(row);
  }
}

function renderControls(state) {
  const available = state.control.available;
  $("controls").hidden = !available;
  $("no-controls").hidden = available;
  const alone = state.members.length < 2;
  for (const id of ["btn-isolate", "btn-split-minority", "btn-split-majority"]) $(id).hidden = alone;
  for (const b of document.querySelectorAll("#controls button, #members button")) b.disabled = ui.busy;
}

// ---------------------------------------------------------------- controls

function split(selfInMajority) {
  const ids = ui.members.map((m) => m.id);
  const others = ids.filter((n) => n !== ui.node);
  const majority = Math.floor(ids.length / 2) + 1;
  const mine = selfInMajority ? majority : ids.length - majority;
  const side = [ui.node, ...others.slice(0, Math.max(0, mine - 1))];
  const rest = ids.filter((n) => !side.includes(n));
  return [side, rest];
}

async function control(path, body, label) {
  if (ui.busy) return;
  ui.busy = true;
  for (const b of document.querySelectorAll("#controls button, #members button")) b.disabled = true;
  const result = $("control-result");
  result.textContent = `${label}: working…`;
  result.className = "muted";
  try {
    const response = await fetchWithin(`/ui/control/${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }, 45000);
    if (response.ok) {
      result.textContent = `${label}: done`;
      result.className = "";
    } else {
      result.textContent = `${label}: failed (${await errorText(response)})`;
      result.className = "error";
    }
  } catch (err) {
    if (path === `kill/${encodeURIComponent(ui.node)}`) {
      result.textContent = `${label}: done (this node stopped, and this page with it)`;
      result.className = "";
    } else {
      result.textContent = `${label}: no answer (${err.name === "AbortError" ? "timeout" : err.message})`;
      result.className = "error";
    }
  } finally {
    ui.busy = false;
    await refreshState();
  }
}

function wireControls() {
  $("btn-isolate").addEventListener("click", () => control(`isolate/${encodeURIComponent(ui.node)}`, {}, `isolate ${ui.node}`));
  $("btn-split-minority").addEventListener("click", () => {
    const groups = split(false);
    control("partition", { groups }, `split ${groups.map((g) => g.join(" ")).join(" | ")}`);
  });
  $("btn-split-majority").addEventListener("click", () => {
    const groups = split(true);
    control("partition", { groups }, `split ${groups.map((g) => g.join(" ")).join(" | ")}`);
  });
  $("btn-heal").addEventListener("click", () => control("heal", {}, "heal"));
}

// ---------------------------------------------------------------- probe

function setNamespaces(namespaces) {
  ui.namespaces = namespaces;
  const names = new Set(namespaces.map((n) => n.name));
  for (const ns of names) {
    if (!ui.probes.has(ns)) {
      const probe = { outcomes: [], lastError: "", lastErrorAt: 0, running: false };
      ui.probes.set(ns, probe);
      if ($("probe-on").checked) runProbe(ns, probe);
    }
  }
  for (const ns of [...ui.probes.keys()]) if (!names.has(ns)) ui.probes.delete(ns);
  renderNamespaces();
}

async function probeOp(probe, what, url, options) {
  const t = Date.now();
  let ok = false;
  try {
    const response = await fetchWithin(url, options, PROBE_TIMEOUT_MS);
    // A read of a key the failed write never created still got an answer.
    ok = response.ok || (what === "read" && response.status === 404);
    if (!ok) [probe.lastError, probe.lastErrorAt] = [`${what}: ${await errorText(response)}`, t];
  } catch (err) {
    probe.lastError = `${what}: ${err.name === "AbortError" ? `no answer in ${PROBE_TIMEOUT_MS} ms` : "connection failed"}`;
    probe.lastErrorAt = t;
  }
  probe.outcomes.push({ t, ok });
  if (probe.outcomes.length > 400) probe.outcomes.splice(0, probe.outcomes.length - 400);
}

async function runProbe(ns, probe) {
  if (probe.running) return;
  probe.running = true;
  const url = () => `/v1/kv/${encodeURIComponent(ns)}/${ui.probePrefix}${encodeURIComponent(ui.node)}`;
  while ($("probe-on").checked && ui.probes.get(ns) === probe) {
    const started = Date.now();
    if (ui.node !== null) {
      await probeOp(probe, "write", url(), { method: "PUT", body: `probe ${started}` });
      await probeOp(probe, "read", url(), {});
      renderNamespaces();
    }
    await new Promise((done) => setTimeout(done, Math.max(0, started + PROBE_EVERY_MS - Date.now())));
  }
  probe.running = false;
}

function rateOf(probe, now) {
  const recent = probe.outcomes.filter((o) => o.t >= now - WINDOW_MS);
  if (recent.length === 0) return null;
  return Math.round((100 * recent.filter((o) => o.ok).length) / recent.length);
}

function renderNamespaces() {
  const body = $("namespaces").tBodies[0];
  const now = Date.now();
  body.replaceChildren();
  for (const ns of ui.namespaces) {
    const probe = ui.probes.get(ns.name);
    const row = el("tr");
    row.dataset.ns = ns.name;
    row.dataset.consistency = ns.consistency;
    const merge = ns.options && ns.options.merge ? ` (${ns.options.merge})` : "";
    const rate = probe ? rateOf(probe, now) : null;
    const rateCell = el("td");
    const rateText = el("span", rate === null ? "—" : `${rate}%`, "rate");
    if (rate !== null) rateText.classList.add(rate >= 90 ? "good" : "poor");
    rateText.dataset.rate = rate === null ? "" : String(rate);
    rateCell.append(rateText);
    const strip = el("td");
    const cells = el("div", null, "strip");
    for (const o of probe ? probe.outcomes.slice(-STRIP) : []) cells.append(el("i", null, o.ok ? "" : "fail"));
    strip.append(cells);
    row.append(el("td", ns.name, "name"), el("td", ns.consistency + merge, "consistency"), rateCell, strip,
      el("td", probe && probe.lastError ? `${probe.lastError}, ${Math.round((now - probe.lastErrorAt) / 1000)} s ago` : "",
        "last-error small"));
    body.append(row);
  }
}

function sampleChart() {
  const now = Date.now();
  const rates = {};
  for (const [ns, probe] of ui.probes) rates[ns] = rateOf(probe, now);
  ui.chart.push({ t: now, cut: ui.cut, rates });
  while (ui.chart.length && ui.chart[0].t < now - CHART_SECONDS * 1000) ui.chart.shift();
  drawChart(now);
}

function drawChart(now) {
  const canvas = $("rate-chart");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 36, top = 8, bottom = 20;
  const x = (t) => left + ((t - (now - CHART_SECONDS * 1000)) / (CHART_SECONDS * 1000)) * (w - left - 8);
  const y = (r) => top + (1 - r / 100) * (h - top - bottom);
  g.clearRect(0, 0, w, h);
  g.fillStyle = "rgba(201, 54, 54, 0.15)";
  for (let i = 0; i < ui.chart.length; i++) {
    if (!ui.chart[i].cut) continue;
    const end = i + 1 < ui.chart.length ? ui.chart[i + 1].t : now;
    g.fillRect(x(ui.chart[i].t), top, x(end) - x(ui.chart[i].t), h - top - bottom);
  }
  g.strokeStyle = "#ccc";
  g.fillStyle = "#6b7682";
  g.font = "11px system-ui, sans-serif";
  for (const r of [0, 50, 100]) {
    g.beginPath(); g.moveTo(left, y(r)); g.lineTo(w - 8, y(r)); g.stroke();
    g.fillText(`${r}%`, 2, y(r) + 4);
  }
  g.fillText(`-${CHART_SECONDS}s`, left, h - 5);
  g.fillText("now", w - 30, h - 5);
  ui.namespaces.forEach((ns, k) => {
    const color = COLORS[k % COLORS.length];
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    let drawing = false;
    for (const s of ui.chart) {
      const r = s.rates[ns.name];
      if (r === null || r === undefined) { drawing = false; continue; }
      if (drawing) g.lineTo(x(s.t), y(r)); else g.moveTo(x(s.t), y(r));
      drawing = true;
    }
    g.stroke();
    g.fillStyle = color;
    g.fillText(`${ns.name} (${ns.consistency})`, left + 8 + k * 150, top + 12);
  });
}

// ---------------------------------------------------------------- start

function start() {
  $("probe-every").textContent = PROBE_EVERY_MS;
  $("probe-window").textContent = WINDOW_MS / 1000;
  $("probe-on").addEventListener("change", () => {
    if ($("probe-on").checked) for (const [ns, probe] of ui.probes) runProbe(ns, probe);
  });
  wireControls();
  const poll = async () => {
    await refreshState();
    $("probe-key").textContent = `${ui.probePrefix}${ui.node ?? "…"}`;
    setTimeout(poll, STATE_EVERY_MS);
  };
  poll();
  setInterval(sampleChart, 1000);
  setInterval(renderNamespaces, 500);
}

start();
