"use strict";
// Data: GET /api/backends every 2 s; cells are updated in place. Buttons POST
// /api/backends/{backend}/servers/{server} with {"state": ...}.
// State changes are POSTs from these buttons only: no URL of this page changes anything.
const COLS = ["name", "addr", "state", "weight", "active", "total", "connect_failures",
              "checks_ok", "checks_failed", "last_check_ms", "last_error"];
const HEAD = ["Server", "Address", "State", "Weight", "Active", "Total", "Conn fails",
              "Checks ok", "Checks failed", "Last check ms", "Last error", "Actions"];
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("sluice-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("sluice-token", tokenInput.value));

function setStatus(text, err, id) {
  const s = document.getElementById(id || "status");
  s.textContent = text;
  s.className = err ? "err" : "";
}

function cellText(col, v) {
  if (v === null || v === undefined) return "-";
  if (col === "last_check_ms") return v.toFixed(1);
  return String(v);
}

function backendTable(b) {
  const id = "be-" + b.name;
  let sec = document.getElementById(id);
  if (sec) return sec;
  sec = document.createElement("section");
  sec.id = id;
  const h = document.createElement("h2");
  sec.appendChild(h);
  const t = document.createElement("table");
  const hr = t.createTHead().insertRow();
  for (const c of HEAD) { const th = document.createElement("th"); th.textContent = c; hr.appendChild(th); }
  t.createTBody();
  sec.appendChild(t);
  document.getElementById("backends").appendChild(sec);
  return sec;
}

function serverRow(sec, b, s) {
  const id = "srv-" + b.name + "/" + s.name;
  let tr = document.getElementById(id);
  if (tr) return tr;
  tr = sec.querySelector("tbody").insertRow();
  tr.id = id;
  for (const c of COLS) {
    const td = tr.insertCell();
    td.dataset.col = c;
    if (c === "name" || c === "addr" || c === "last_error") td.className = "l";
    if (c === "state") td.className = "state";
  }
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
  return tr;
}

function render(data) {
  for (const b of data.backends) {
    const sec = backendTable(b);
    sec.querySelector("h2").textContent =
      "backend " + b.name + " (" + b.balance + ", queue " + b.queue + ")";
    for (const s of b.servers) {
      const tr = serverRow(sec, b, s);
      tr.className = s.state;
      for (const td of tr.querySelectorAll("td[data-col]")) {
        td.textContent = cellText(td.dataset.col, s[td.dataset.col]);
      }
    }
  }
}

async function refresh() {
  try {
    const r = await fetch("/api/backends", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    setStatus("updated " + new Date().toLocaleTimeString(), false);
  } catch (e) {
    setStatus("cannot load /api/backends: " + e.message, true);
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
