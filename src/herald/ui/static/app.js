// herald web view: plain JavaScript and SVG, no library, nothing fetched but this server's API.
// Data reaches the DOM through textContent and attributes only, never innerHTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const MAP_SERVICES = 150; // Services drawn at once; the filter box finds the others
const FLOW_ROWS = 500; // rows kept in the flow table
const COLUMNS = { client: 20, router: 270, node: 520, service: 790, pod: 1060 };
const BOX = { w: 210, h: 34 };

const state = {
  model: null,
  edges: { edges: [], total: 0, window: 10 },
  selected: null,
  source: null,
  pendingFlows: [],
  // Read by the browser tests and the benchmark.
  // firstRenderMs: from navigation start to the first drawn model; drawMs: each redraw's
  // cost; lagMs: per flow batch drawn, how old its newest event was.
  stats: { firstRenderMs: null, renders: 0, flowsShown: 0, lagMs: [], drawMs: [],
    connected: false, lost: 0 },
};
window.herald = state;

function el(name, attrs, text) {
  const node = document.createElement(name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function row(cells, classes) {
  const tr = el("tr");
  cells.forEach((cell, i) => {
    const td = el("td", classes && classes[i] ? { class: classes[i] } : {}, cell);
    tr.appendChild(td);
  });
  return tr;
}

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  const fragment = document.createDocumentFragment();
  for (const r of rows) fragment.appendChild(r);
  body.replaceChildren(fragment);
}

function clock(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 23);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.floor(seconds);
  if (s >= 86400) return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${s}s`;
}

function endpoint(address, port) {
  if (!address) return "";
  const host = address.includes(":") ? `[${address}]` : address;
  return port === null || port === undefined ? host : `${host}:${port}`;
}

// -- tabs ---------------------------------------------------------------------------------

for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => {
    for (const b of document.querySelectorAll("#tabs button")) b.classList.remove("active");
    for (const t of document.querySelectorAll(".tab")) t.classList.remove("active");
    button.classList.add("active");
    document.getElementById(`tab-${button.dataset.tab}`).classList.add("active");
    scheduleDraw();
  });
}

// -- the event stream ---------------------------------------------------------------------

function flowQuery() {
  const form = document.getElementById("flow-filter");
  const params = new URLSearchParams();
  for (const input of form.querySelectorAll("input[name], select[name]")) {
    if (input.value.trim()) params.set(input.name, input.value.trim());
  }
  return params;
}

function connect() {
  if (state.source) state.source.close();
  const query = flowQuery().toString();
  const source = new EventSource(`/api/stream${query ? "?" + query : ""}`);
  state.source = source;
  const conn = document.getElementById("conn");
  source.onopen = () => {
    state.stats.connected = true;
    conn.textContent = "live";
    conn.className = "up";
  };
  source.onerror = () => {
    state.stats.connected = false;
    conn.textContent = "disconnected (retrying)";
    conn.className = "down";
  };
  source.addEventListener("model", (e) => {
    state.model = JSON.parse(e.data);
    scheduleDraw();
  });
  source.addEventListener("edges", (e) => {
    state.edges = JSON.parse(e.data);
    scheduleDraw();
  });
  source.addEventListener("flows", (e) => {
    const flows = JSON.parse(e.data);
    if (!document.getElementById("flow-pause").checked) {
      for (const f of flows) state.pendingFlows.push(f);
      scheduleFlows();
    }
  });
  source.addEventListener("lost", (e) => {
    state.stats.lost += JSON.parse(e.data).messages;
  });
}

document.getElementById("flow-filter").addEventListener("submit", (e) => {
  e.preventDefault();
  document.querySelector("#flows tbody").replaceChildren();
  state.pendingFlows = [];
  connect();
});

// At most one draw of each kind per frame, however many messages came since the last.
const queued = new Set();

function onNextFrame(draw) {
  if (queued.has(draw)) return;
  queued.add(draw);
  requestAnimationFrame(() => {
    queued.delete(draw);
    draw();
  });
}

function scheduleDraw() {
  onNextFrame(drawAll);
}

function scheduleFlows() {
  onNextFrame(drawFlows);
}

function drawAll() {
  const model = state.model;
  if (!model) return;
  const began = performance.now();
  const problems = document.getElementById("problems");
  problems.replaceChildren(...(model.problems || []).map((p) => el("li", {}, p)));
  for (const node of model.nodes) {
    if (node.error) problems.appendChild(el("li", {}, `${node.name}: ${node.error}`));
  }
  document.getElementById("updated").textContent = `updated ${clock(model.time).slice(11, 19)} UTC`;
  // Only the visible tab is drawn (a hidden one is drawn when shown): at 1,000 Services the
  // map costs tens of milliseconds a redraw, which the flow table should not wait for.
  const shown = document.querySelector("#tabs button.active").dataset.tab;
  if (shown === "map") {
    drawMap(model);
    if (state.selected) drawDetail(state.selected, false);
  }
  if (shown === "bgp") drawBgp(model);
  if (shown === "l2") drawL2(model);
  if (shown === "pools") drawPools(model);
  state.stats.renders += 1;
  state.stats.drawMs.push(performance.now() - began);
  if (state.stats.drawMs.length > 1000) state.stats.drawMs.shift();
  if (state.stats.firstRenderMs === null) state.stats.firstRenderMs = performance.now();
}

// -- the service map ----------------------------------------------------------------------

function nodeState(node) {
  if (node.error) return "down";
  if (node.sessions.length === 0) return node.l2 && !node.l2Live ? "down" : "nosessions";
  return node.sessions.every((s) => s.established) ? "established" : "down";
}

function box(group, kind, key, x, y, lines, classes) {
  const g = svg("g", { class: `box ${kind} ${classes || ""}`, "data-kind": kind, "data-key": key,
    transform: `translate(${x},${y})` });
  const height = BOX.h + (lines.length > 2 ? (lines.length - 2) * 13 : 0);
  g.appendChild(svg("rect", { width: BOX.w, height: height }));
  lines.forEach((line, i) => g.appendChild(svg("text", { x: 6, y: 14 + i * 13 }, line)));
  group.appendChild(g);
  return { x, y, h: height };
}

function edgeWidth(rate) {
  return 1 + Math.min(10, Math.log2(1 + rate) * 2);
}

let mapDrawn = "";
let edgesDrawn = "";

// What the map's boxes show, so that they are redrawn only when that changes (a redraw
// under the pointer would eat a click, and costs tens of ms at 1,000 Services); uptimes
// and timestamps are not in it. When only the flow counts change, the edges are restyled
// in place.
function mapSignature(model, filter, services, clients) {
  return JSON.stringify([filter, state.selected, model.routers, clients,
    model.nodes.map((n) => [n.name, n.error, n.l2, n.l2Live,
      n.sessions.map((s) => [s.peer, s.state, s.bfd])]),
    model.l2.vips.map((v) => [v.vip, v.owner]),
    services.map((s) => [s.key, s.announcedBy,
      s.frontends.map((f) => [f.frontend, f.backends.map((b) => [b.pod, b.address, b.node, b.state])])])]);
}

function edgeRates() {
  const rates = {};
  for (const e of state.edges.edges) {
    const key = `${e.kind}|${e.from}|${e.to}`;
    const seen = rates[key] || { rate: 0, count: 0, verdicts: {} };
    seen.rate += e.rate;
    seen.count += e.count;
    seen.verdicts[e.verdict] = (seen.verdicts[e.verdict] || 0) + e.rate + e.count * 1e-9;
    rates[key] = seen;
  }
  return rates;
}

function drawMap(model) {
  const map = document.getElementById("map");
  const filter = document.getElementById("map-filter").value.trim().toLowerCase();
  const rates = edgeRates();
  const busy = (service) => {
    let total = 0;
    for (const n of model.nodes) {
      const r = rates[`node|${n.name}|${service.key}`];
      if (r) total += r.count;
    }
    return total;
  };
  let services = model.services.filter((s) => !filter || s.key.toLowerCase().includes(filter)
    || s.vips.some((v) => v.includes(filter)));
  const matching = services.length;
  if (services.length > MAP_SERVICES) {
    services = services.map((s) => [busy(s), s]).sort((a, b) => b[0] - a[0])
      .slice(0, MAP_SERVICES).map((p) => p[1]).sort((a, b) => a.key.localeCompare(b.key));
  }
  const clients = [...new Set(state.edges.edges.filter((e) => e.kind === "client")
    .map((e) => e.from))].sort();
  const signature = mapSignature(model, filter, services, clients);
  if (signature === mapDrawn) {
    const edgesNow = JSON.stringify(state.edges.edges);
    if (edgesNow !== edgesDrawn) {
      edgesDrawn = edgesNow;
      for (const path of map.querySelectorAll("path.edge")) styleEdge(path, rates);
    }
    return;
  }
  mapDrawn = signature;
  edgesDrawn = JSON.stringify(state.edges.edges);
  document.getElementById("map-note").textContent = matching > services.length
    ? `${services.length} of ${matching} Services drawn (the busiest); filter to find others`
    : `${services.length} Services`;

  const edges = svg("g", { class: "edges" });
  const boxes = svg("g", { class: "boxes" });
  const at = {};
  const top = 30;
  const titles = svg("g");
  for (const [name, x] of Object.entries({ clients: COLUMNS.client, routers: COLUMNS.router,
    nodes: COLUMNS.node, "Services (VIP:port)": COLUMNS.service, "pods (by node)": COLUMNS.pod })) {
    titles.appendChild(svg("text", { class: "col-title", x: x, y: 16 }, name));
  }

  // Clients: those in the flow counts.
  clients.forEach((c, i) => {
    at[`client|${c}`] = box(boxes, "client", c, COLUMNS.client, top + i * 44, [c, "client"]);
  });
  // Routers: the peers of the nodes' sessions; with L2, the LAN.
  const routers = model.routers.length ? model.routers
    : [{ address: "LAN", asn: null, name: "L2 segment" }];
  routers.forEach((r, i) => {
    at[`router|${r.address}`] = box(boxes, "router", r.address, COLUMNS.router, top + i * 56,
      [r.address, r.asn ? `AS ${r.asn}` : r.name], "");
  });
  // Nodes.
  const owners = {};
  for (const v of model.l2.vips) if (v.owner) (owners[v.owner] = owners[v.owner] || []).push(v.vip);
  let y = top;
  for (const n of model.nodes) {
    const st = nodeState(n);
    const lines = [n.name];
    for (const s of n.sessions) lines.push(`${s.peer} ${s.state}${s.bfd ? " BFD " + s.bfd : ""}`);
    if (n.error) lines.push("agent not answering");
    if (owners[n.name]) lines.push(`L2 owner: ${owners[n.name].slice(0, 3).join(", ")}`
      + (owners[n.name].length > 3 ? ` +${owners[n.name].length - 3}` : ""));
    const b = box(boxes, "node", n.name, COLUMNS.node, y, lines,
      `${st}${owners[n.name] ? " l2owner" : ""}`);
    b.g = boxes.lastChild;
    b.g.setAttribute("data-state", st);
    at[`node|${n.name}`] = b;
    y += b.h + 12;
  }
  // Services and, beside them, their pods grouped by node.
  y = top;
  let podY = top;
  const pods = {};
  for (const s of services) {
    const ports = s.frontends.map((f) => f.frontend).slice(0, 2);
    const lines = [s.key, ...ports];
    if (s.frontends.length > 2) lines.push(`+${s.frontends.length - 2} frontends`);
    const b = box(boxes, "service", s.key, COLUMNS.service, y, lines,
      state.selected === s.key ? "selected" : "");
    boxes.lastChild.addEventListener("click", () => drawDetail(s.key, true));
    at[`service|${s.key}`] = b;
    y += b.h + 8;
    const backends = [];
    for (const f of s.frontends) for (const be of f.backends) backends.push(be);
    const seen = new Set();
    backends.sort((a, c) => (a.node + a.pod).localeCompare(c.node + c.pod));
    for (const be of backends) {
      const pod = be.pod || be.address;
      if (seen.has(pod)) continue;
      seen.add(pod);
      if (!pods[pod]) {
        pods[pod] = box(boxes, "pod", pod, COLUMNS.pod, podY,
          [pod, `${be.address} on ${be.node || "?"}`], be.state === "active" ? "" : "not-ready");
        podY += pods[pod].h + 6;
      }
      link(edges, rates, "pod", s.key, pod, at[`service|${s.key}`], pods[pod]);
    }
  }
  // Edges: client -> every router, router -> node, node -> Service, Service -> pod.
  for (const c of clients) {
    for (const r of routers) link(edges, rates, "client", c, "*", at[`client|${c}`], at[`router|${r.address}`]);
  }
  for (const n of model.nodes) {
    const peers = n.sessions.length ? n.sessions.map((s) => s.peer) : routers.map((r) => r.address);
    for (const p of peers) {
      if (at[`router|${p}`]) link(edges, rates, "router", "*", n.name, at[`router|${p}`], at[`node|${n.name}`]);
    }
  }
  for (const s of services) {
    const announcing = new Set(s.announcedBy);
    for (const n of model.nodes) {
      const r = rates[`node|${n.name}|${s.key}`];
      if (!announcing.has(n.name) && !r) continue;
      link(edges, rates, "node", n.name, s.key, at[`node|${n.name}`], at[`service|${s.key}`],
        announcing.has(n.name) && !r ? "announce" : "");
    }
  }
  const height = Math.max(y, podY, top + clients.length * 44, top + routers.length * 56,
    ...Object.values(at).map((b) => b.y + b.h)) + 20;
  map.setAttribute("width", COLUMNS.pod + BOX.w + 20);
  map.setAttribute("height", height);
  map.replaceChildren(titles, edges, boxes);
}

function link(group, rates, kind, from, to, a, b, extra) {
  if (!a || !b) return;
  const x1 = a.x + BOX.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
  const mid = (x1 + x2) / 2;
  const path = svg("path", {
    d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
    "data-kind": kind, "data-from": from, "data-to": to, "data-extra": extra || "",
  });
  group.appendChild(path);
  group.appendChild(svg("text", { class: "count", x: mid - 8, y: (y1 + y2) / 2 - 3 }));
  styleEdge(path, rates);
}

// An edge's look from its counts: width by rate, colour by verdict, its count beside it
// (the text element right after the path).
function styleEdge(path, rates) {
  const d = path.dataset;
  const r = rates[`${d.kind}|${d.from}|${d.to}`];
  let verdict = "";
  if (r) verdict = (r.verdicts.DROPPED || 0) > (r.verdicts.FORWARDED || 0) ? "DROPPED" : "FORWARDED";
  path.setAttribute("class", `edge ${verdict} ${r ? "" : d.extra}`);
  path.setAttribute("stroke-width", r ? edgeWidth(r.rate) : 1);
  d.count = r ? r.count : 0;
  d.rate = r ? r.rate : 0;
  path.nextSibling.textContent = r && r.count ? r.count : "";
}

document.getElementById("map-filter").addEventListener("input", scheduleDraw);

// -- a Service's detail -------------------------------------------------------------------

document.getElementById("detail-close").addEventListener("click", () => {
  state.selected = null;
  document.getElementById("detail").hidden = true;
  scheduleDraw();
});

async function drawDetail(key, fetchFlows) {
  const service = state.model && state.model.services.find((s) => s.key === key);
  if (!service) return;
  const changed = state.selected !== key;
  state.selected = key;
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent = key;
  const body = document.getElementById("detail-body");
  let flows = body.querySelector("table.flows");
  const parts = [
    el("p", {}, `VIPs ${service.vips.join(", ")}; announced by ` +
      `${service.announcedBy.join(", ") || "no node"}; ${service.packets} packets, ` +
      `${service.bytes} bytes (all nodes)`),
  ];
  for (const f of service.frontends) {
    parts.push(el("h3", {}, `${f.frontend} (${f.mode}, ${f.trafficPolicy})`));
    const t = el("table", { class: "grid backends" });
    t.appendChild(row(["backend", "pod", "node", "state"]));
    for (const b of f.backends) {
      t.appendChild(row([endpoint(b.address, b.port), b.pod, b.node, b.state],
        [null, null, null, b.state === "active" ? "ok" : "bad"]));
    }
    if (!f.backends.length) t.appendChild(row(["none: new connections refused"]));
    parts.push(t);
  }
  parts.push(el("h3", {}, "last flows"));
  if (!flows || changed) flows = el("table", { class: "grid flows" });
  parts.push(flows);
  body.replaceChildren(...parts);
  if (changed) scheduleDraw();
  if (fetchFlows || changed) {
    const response = await fetch(`/api/flows?service=${encodeURIComponent(key)}&last=20`);
    const data = await response.json();
    flows.replaceChildren(row(["time", "client", "backend", "pod", "node", "verdict"]),
      ...data.flows.reverse().map((f) => row([clock(f.time).slice(11), endpoint(f.client, f.client_port),
        endpoint(f.backend, f.backend_port), f.pod, f.node, f.verdict],
      [null, null, null, null, null, f.verdict])));
  }
}

// -- flows --------------------------------------------------------------------------------

// Rows stay newest first by the event's time: nodes' streams arrive each at its own pace
// (as `herald observe --follow` merges them), so a late event takes its place.
function drawFlows() {
  const flows = state.pendingFlows;
  state.pendingFlows = [];
  if (!flows.length) return;
  const body = document.querySelector("#flows tbody");
  const now = Date.now() / 1000;
  const shown = flows.slice(-FLOW_ROWS).sort((a, b) => a.time - b.time);
  const fragment = document.createDocumentFragment();
  let i = shown.length - 1;
  const newestShown = body.firstChild ? Number(body.firstChild.dataset.time) : -Infinity;
  // Those newer than every row: one fragment on top (the common case, cheap at any rate).
  while (i >= 0 && shown[i].time >= newestShown) fragment.appendChild(flowRow(shown[i--]));
  const late = shown.slice(0, i + 1);
  body.insertBefore(fragment, body.firstChild);
  for (let j = late.length - 1; j >= 0; j--) {
    let at = body.firstChild;
    while (at && Number(at.dataset.time) > late[j].time) at = at.nextSibling;
    body.insertBefore(flowRow(late[j]), at);
  }
  while (body.childElementCount > FLOW_ROWS) body.lastChild.remove();
  state.stats.flowsShown += flows.length;
  const newest = shown[shown.length - 1].time;
  state.stats.lagMs.push(Math.max(0, (now - newest) * 1000));
  if (state.stats.lagMs.length > 1000) state.stats.lagMs.shift();
  document.getElementById("flow-count").textContent = `${state.stats.flowsShown} events received`;
}

function flowRow(f) {
  const tr = row([clock(f.time).slice(11), f.node, f.direction === "reply" ? "←" : "→", f.protocol,
    endpoint(f.client, f.client_port), endpoint(f.vip, f.vip_port), f.service,
    endpoint(f.backend, f.backend_port), f.pod, f.verdict, f.reason, (f.tcp_flags || []).join(",")],
  [null, null, null, null, null, null, null, null, null, f.verdict]);
  tr.dataset.time = f.time;
  tr.dataset.service = f.service;
  tr.dataset.client = f.client;
  return tr;
}

// -- BGP, L2, pools -----------------------------------------------------------------------

function drawBgp(model) {
  const rows = [];
  for (const n of model.nodes) {
    if (n.error) rows.push(row([n.name, "", "", "", "agent not answering"], [null, null, null, null, "bad"]));
    for (const s of n.sessions) {
      rows.push(row([n.name, s.name, s.peer, `${s.localAS} / ${s.peerAS}`, s.state,
        s.established ? duration(s.uptimeSeconds) : "", s.advertised, s.received, s.bfd || "",
        s.routes.join(" "), s.lastDown || ""],
      [null, null, null, null, s.established ? "ok" : "bad", null, null, null,
        s.bfd ? (s.bfd.toLowerCase() === "up" ? "ok" : "bad") : null]));
    }
  }
  fillTable("bgp", rows);
}

function drawL2(model) {
  const now = Date.now() / 1000;
  fillTable("l2", model.l2.vips.map((v) => row([v.vip, v.owner || "(none)",
    v.since ? `${clock(v.since).slice(11, 19)} (${duration(now - v.since)} ago)` : "",
    v.candidates.join(", "), v.answering || ""], [null, v.owner ? "ok" : "bad"])));
  fillTable("l2-changes", model.l2.changes.slice().reverse().map((c) => row([clock(c.time).slice(11),
    c.vip, c.old || "(none)", c.new || "(none)"])));
}

function drawPools(model) {
  fillTable("pools", model.pools.map((p) => {
    const tr = row([p.name, p.blocks.join(", "), "", p.total === null ? "unknown"
      : `${p.used} / ${p.total}`, p.conflict === null ? "unknown" : p.conflict ? p.conflictMessage : "no",
    p.disabled ? "yes" : "no"], [null, null, null, null, p.conflict ? "bad" : null]);
    const bar = el("span", { class: "bar" });
    const fill = el("span");
    const share = p.total ? p.used / p.total : 0;
    fill.style.width = `${Math.round(share * 100)}%`;
    if (share >= 1) fill.className = "full";
    bar.appendChild(fill);
    tr.children[2].appendChild(bar);
    return tr;
  }));
  fillTable("pending", model.pending.map((p) => row([p.service, p.state, p.why], [null, "bad"])));
}

connect();
