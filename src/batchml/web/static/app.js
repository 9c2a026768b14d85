// The dashboard page: polls /api/status (and the plots) and requeues dead items with the token.
"use strict";

const STATES = ["waiting", "ready", "leased", "done", "dead", "blocked"];
let refreshMs = 3000;
let ticks = 0;

function $(id) { return document.getElementById(id); }

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.max(Math.floor(seconds), 0);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fill(tbody, rows, build, key) {
  // Rebuild only when the rows changed, so buttons stay put between refreshes.
  const signature = JSON.stringify(key === undefined ? rows : key);
  if (tbody.dataset.signature === signature) return;
  tbody.dataset.signature = signature;
  tbody.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    build(tr, item);
    tbody.appendChild(tr);
  }
}

function showCounts(data) {
  for (const s of STATES) $("count-" + s).textContent = data.counts[s];
  $("count-total").textContent = data.total;
  const ended = data.counts.done + data.counts.dead + data.counts.blocked;
  $("progress-bar").style.width = (data.total ? (100 * ended) / data.total : 0) + "%";
  $("summary").textContent = data.drained
    ? (data.counts.blocked ? "Drained: " + data.counts.blocked + " item(s) blocked behind dead ones."
      : "Drained: every item has ended.")
    : ended + " of " + data.total + " items ended.";
}

function showWorkers(data) {
  const alive = data.workers.filter((w) => w.alive).length;
  $("workers-count").textContent = alive + " alive, " + (data.workers.length - alive) + " gone";
  fill($("workers").tBodies[0], data.workers, (tr, w) => {
    if (!w.alive) tr.className = "gone";
    cell(tr, w.id);
    cell(tr, w.host);
    cell(tr, w.alive ? w.state : (w.state === "exited" ? "exited" : "silent"));
    cell(tr, w.item_id || "-");
    cell(tr, w.item_since ? ago(data.now - w.item_since) : "-", "num");
    cell(tr, String(w.processed), "num");
    cell(tr, ago(w.seen_ago) + " ago", "num");
  });
}

function showHead(data) {
  const h = data.lineage_head;
  const ckpt = h.checkpoint ? h.checkpoint.final : "-";
  $("head").textContent = "run " + data.run + ": v" + h.version +
    (h.dataset ? " trained through " + h.dataset : "") + " — checkpoint " + ckpt;
  const t = data.throughput;
  $("throughput").textContent = t.done_per_minute.toFixed(1) + " items done per minute over the last " +
    t.window_minutes + " minutes";
}

function showDead(data, canRequeue) {
  $("dead-count").textContent = String(data.counts.dead);
  fill($("dead").tBodies[0], data.dead.map((d) => ({ ...d, canRequeue })), (tr, d) => {
    tr.dataset.id = d.id;
    cell(tr, d.id);
    cell(tr, String(d.attempts), "num");
    cell(tr, d.error || "", "error-text");
    const td = cell(tr, "");
    if (canRequeue) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "requeue";
      b.textContent = "Requeue";
      b.addEventListener("click", () => requeue([d.id]));
      td.appendChild(b);
    }
  });
}

let config = { can_requeue: false };

async function showPlots() {
  // The plots the server lists: metrics and throughput in their places, then one image per
  // plot of the run's report sections (whatever its workload is; the page names none).
  const listed = await (await fetch("/api/plots", { cache: "no-store" })).json();
  const extra = $("section-plots");
  for (const plot of listed.plots) {
    let img = $("plot-" + plot.name);
    if (!img) {
      img = document.createElement("img");
      img.id = "plot-" + plot.name;
      img.alt = plot.title;
      img.width = 520;
      img.height = 280;
      extra.appendChild(img);
    }
    img.src = "/api/plots/" + encodeURIComponent(plot.name) + ".svg?t=" + ticks;
  }
}

async function refresh() {
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    if (!response.ok) throw new Error("status " + response.status);
    const data = await response.json();
    showCounts(data);
    showWorkers(data);
    showHead(data);
    showDead(data, config.can_requeue);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("error").hidden = true;
    if (ticks % 3 === 0) await showPlots();
    ticks += 1;
    document.body.dataset.loaded = "true";
  } catch (err) {
    $("error").textContent = "cannot reach the dashboard: " + err.message;
    $("error").hidden = false;
  }
  setTimeout(refresh, refreshMs);
}

async function requeue(ids) {
  const message = $("message");
  const response = await fetch("/api/requeue", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Authorization": "Bearer " + $("token").value },
    body: JSON.stringify(ids ? { ids: ids } : {}),
  });
  const body = await response.json();
  if (response.ok) {
    message.className = "ok";
    message.textContent = "requeued " + body.requeued + " item(s)";
  } else {
    message.className = "refused";
    message.textContent = "refused (" + response.status + "): " + body.error;
  }
  ticks = 0;
}

async function start() {
  config = await (await fetch("/api/config", { cache: "no-store" })).json();
  refreshMs = 1000 * config.refresh_seconds;
  $("run").textContent = "run " + config.run;
  $("queue").textContent = config.queue;
  $("requeue-controls").hidden = !config.can_requeue;
  $("read-only").hidden = config.can_requeue;
  $("requeue-all").addEventListener("click", () => requeue(null));
  refresh();
}

start();
