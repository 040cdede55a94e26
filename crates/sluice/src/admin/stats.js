"use strict";
// Data: GET /stats.json every 2 s (the process row, frontends, backends with their servers);
// cells are updated in place, rows of what a reload removed are dropped. Buttons POST
// /api/backends/{backend}/servers/{server} with {"state": ...}. State changes are POSTs
// from these buttons only: no URL changes anything.
const FE_COLS = [["name", "Frontend"], ["mode", "Mode"], ["addrs", "Bind"], ["backend", "Backend"],
  ["status", "Status"], ["current", "Cur"], ["max", "Max"], ["limit", "Limit"], ["rate", "Rate/s"],
  ["rate_max", "Rate max"], ["total", "Total"], ["bytes_in", "Bytes in"], ["bytes_out", "Bytes out"],
  ["denied", "Denied"], ["errors", "Errors"], ["http", "HTTP 1xx/2xx/3xx/4xx/5xx"]];
const SRV_COLS = [["name", "Server"], ["addr", "Address"], ["status", "Status"], ["since_s", "Since"],
  ["check", "Last check"], ["detail", "Check detail"], ["weight", "Weight"], ["act", "Act"],
  ["bck", "Bck"], ["active", "Cur"], ["max_connections", "Limit"], ["total", "Total"],
  ["connect_failures", "Conn fails"], ["checks_failed", "Chk fail"], ["downs", "Downs"]];
const LEFT = new Set(["name", "addr", "addrs", "backend", "mode", "status", "check", "detail", "http"]);
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("sluice-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("sluice-token", tokenInput.value));
let maxConnections = null;

function setStatus(text, err, id) {
  const s = document.getElementById(id || "status");
  s.textContent = text;
  s.className = err ? "err" : "";
}

// A duration as HAProxy's stats page shows it: 3d4h, 1h2m, 5m6s, 7s.
function human(secs) {
  if (secs === null || secs === undefined) return "-";
  const d = Math.floor(secs / 86400), h = Math.floor(secs / 3600) % 24;
  const m = Math.floor(secs / 60) % 60, s = secs % 60;
  if (d > 0) return d + "d" + h + "h";
  if (h > 0) return h + "h" + m + "m";
  if (m > 0) return m + "m" + s + "s";
  return s + "s";
}

function checkText(c) {
  if (!c) return "-";
  return c.status + (c.code ? "/" + c.code : "") + " in " + c.duration_ms + "ms";
}

function table(parent, id, cols, extra) {
  let t = document.getElementById(id);
  if (t) return t;
  t = document.createElement("table");
  t.id = id;
  const hr = t.createTHead().insertRow();
  for (const [, label] of cols.concat(extra || [])) {
    const th = document.createElement("th");
    th.textContent = label;
    hr.appendChild(th);
  }
  t.createTBody();
  parent.appendChild(t);
  return t;
}

function row(t, id, cols) {
  let tr = document.getElementById(id);
  if (tr) return tr;
  tr = t.tBodies[0].insertRow();
  tr.id = id;
  for (const [c] of cols) {
    const td = tr.insertCell();
    td.dataset.col = c;
    if (LEFT.has(c)) td.className = "l";
  }
  return tr;
}

function fill(tr, values) {
  for (const td of tr.querySelectorAll("td[data-col]")) {
    const v = values[td.dataset.col];
    td.textContent = v === null || v === undefined ? "-" : String(v);
  }
}

function renderProcess(p) {
  maxConnections = p.max_connections;
  for (const td of document.querySelectorAll("#process-row td[data-p]")) {
    const v = p[td.dataset.p];
    td.textContent = td.dataset.p === "uptime_s" ? human(v) : (v === null ? "-" : String(v));
  }
}

// Removes the children of `parent` whose id is not in `keep` (gone after a reload).
function prune(parent, keep) {
  for (const el of Array.from(parent.children)) {
    if (el.id && !keep.has(el.id)) el.remove();
  }
}

function renderFrontends(list) {
  const t = table(document.getElementById("frontends"), "frontends-table", FE_COLS);
  prune(t.tBodies[0], new Set(list.map((f) => "fe-" + f.name)));
  for (const f of list) {
    const tr = row(t, "fe-" + f.name, FE_COLS);
    tr.className = "open";
    const h = f.http_responses;
    fill(tr, Object.assign({}, f, {
      addrs: f.addrs.join(" "),
      limit: maxConnections,
      errors: f.proxy_errors + f.tls_failures,
      http: h ? [h["1xx"], h["2xx"], h["3xx"], h["4xx"], h["5xx"]].join("/") : "-",
    }));
  }
}

function serverValues(s) {
  return Object.assign({}, s, {
    since_s: human(s.since_s),
    check: checkText(s.check),
    detail: s.check ? s.check.detail || "" : "",
    act: s.backup ? "" : "Y",
    bck: s.backup ? "Y" : "",
    max_connections: s.max_connections || "-",
  });
}

function backendSection(b) {
  const id = "be-" + b.name;
  let sec = document.getElementById(id);
  if (sec) return sec;
  sec = document.createElement("section");
  sec.id = id;
  sec.appendChild(document.createElement("h2"));
  document.getElementById("backends").appendChild(sec);
  return sec;
}

function actions(tr, b, s) {
  if (tr.querySelector("button")) return;
  const act = tr.insertCell();
  act.className = "l";
  for (const a of ["drain", "maint", "ready"]) {
    const btn = document.createElement("button");
    btn.textContent = a;
    btn.dataset.action = a;
    btn.dataset.backend = b.name;
    btn.dataset.server = s.name;
    btn.addEventListener("click", () => setState(b.name, s.name, a));
    act.appendChild(btn);
  }
}

function renderBackends(list) {
  prune(document.getElementById("backends"), new Set(list.map((b) => "be-" + b.name)));
  for (const b of list) {
    const sec = backendSection(b);
    sec.querySelector("h2").textContent = "backend " + b.name + " (" + b.balance + ", queue " +
      b.queue + (b.backup_active ? ", on backup servers" : "") + ")";
    const t = table(sec, "tbl-" + b.name, SRV_COLS, [["", "Actions"]]);
    const keep = new Set(b.servers.map((s) => "srv-" + b.name + "/" + s.name));
    keep.add("betot-" + b.name);
    prune(t.tBodies[0], keep);
    for (const s of b.servers) {
      const tr = row(t, "srv-" + b.name + "/" + s.name, SRV_COLS);
      actions(tr, b, s);
      tr.className = s.state;
      fill(tr, serverValues(s));
    }
    // The BACKEND row stays last.
    const tot = row(t, "betot-" + b.name, SRV_COLS);
    if (tot.cells.length === SRV_COLS.length) tot.insertCell();
    t.tBodies[0].appendChild(tot);
    tot.className = "total " + (b.status === "UP" ? "up" : "down");
    fill(tot, { name: "BACKEND", addr: "", status: b.status, since_s: "", check: "", detail: "",
                weight: "", act: b.active_servers, bck: b.backup_servers, active: b.current,
                max_connections: "", total: b.total, connect_failures: b.connect_failures,
                checks_failed: "", downs: "" });
  }
}

async function refresh() {
  try {
    const r = await fetch("/stats.json", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const data = await r.json();
    renderProcess(data.process);
    renderFrontends(data.frontends);
    renderBackends(data.backends);
    setStatus("updated " + new Date().toLocaleTimeString(), false);
  } catch (e) {
    setStatus("cannot load /stats.json: " + e.message, true);
  }
}

async function setState(backend, server, state) {
  const headers = { "Content-Type": "application/json" };
  if (tokenInput.value) headers["Authorization"] = "Bearer " + tokenInput.value;
  try {
    const r = await fetch("/api/backends/" + encodeURIComponent(backend) + "/servers/" +
                          encodeURIComponent(server),
                          { method: "POST", headers, body: JSON.stringify({ state }) });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
    setStatus(backend + "/" + server + " is now " + body.state + " (" + body.note + ")", false,
              "action");
  } catch (e) {
    setStatus("cannot set " + backend + "/" + server + " to " + state + ": " + e.message, true,
              "action");
  }
  await refresh();
}

refresh();
setInterval(refresh, 2000);
