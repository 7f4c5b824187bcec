// gearworks dashboard: polls the server's JSON API every second and redraws the tiles, the two charts (drawn on
// canvas by hand, no library) and the tables. Changes (requeue, purge) are POSTs to the same API.
"use strict";

const POLL_MS = 1000;
const SERIES = {
  throughput: [
    ["completed", "--completed"],
    ["submitted", "--submitted"],
    ["failed", "--failed"],
  ],
  depth: [
    ["queued", "--queued"],
    ["running", "--running"],
  ],
};

const $ = (selector) => document.querySelector(selector);
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function number(value) {
  if (value >= 1e6) return (value / 1e6).toFixed(value >= 1e7 ? 0 : 1) + "M";
  if (value >= 1e4) return (value / 1e3).toFixed(value >= 1e5 ? 0 : 1) + "k";
  return String(Math.round(value));
}

function rate(value) {
  if (!value) return "0";
  if (value < 10) return value.toFixed(1);
  return number(value);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 0.001) return Math.round(seconds * 1e6) + " µs";
  if (seconds < 1) return (seconds * 1e3).toPrecision(3).replace(/\.?0+$/, "") + " ms";
  if (seconds < 120) return seconds.toPrecision(3).replace(/\.?0+$/, "") + " s";
  return (seconds / 60).toFixed(1) + " min";
}

function uptime(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return `${m}m ${Math.floor(seconds % 60)}s`;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

// -- charts --------------------------------------------------------------------------------------------------

function niceMax(value) {
  if (value <= 4) return 4; // small numbers: whole steps of 1 on the axis
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function drawChart(canvas, points, series) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight || 190;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);

  const left = 44, right = 8, top = 8, bottom = 22;
  const plotW = width - left - right, plotH = height - top - bottom;
  const now = points.length ? points[points.length - 1].at : Date.now() / 1000;
  // A young server fills the chart: the window grows with the history, from one minute to ten.
  const age = points.length ? now - points[0].at : 0;
  const span = Math.min(600, Math.max(60, Math.ceil(age / 60) * 60));
  let max = 0;
  for (const point of points) for (const [key] of series) max = Math.max(max, point[key]);
  max = niceMax(max);

  g.font = "11px system-ui, sans-serif";
  g.fillStyle = css("--muted");
  g.strokeStyle = css("--line");
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    g.beginPath();
    g.moveTo(left, Math.round(y) + 0.5);
    g.lineTo(left + plotW, Math.round(y) + 0.5);
    g.stroke();
    g.fillText(number((max * i) / 4), left - 6, y);
  }
  g.textBaseline = "top";
  for (let tick = 5; tick >= 0; tick--) {
    const seconds = (span * tick) / 5;
    const x = left + plotW - (plotW * seconds) / span;
    const text = seconds >= 60 ? `-${+(seconds / 60).toFixed(1)}m` : `-${seconds}s`;
    g.textAlign = tick ? (tick === 5 ? "left" : "center") : "right";
    g.fillText(tick ? text : "now", tick ? x : left + plotW, top + plotH + 6);
  }
  canvas.closest("figure").querySelector(".window").textContent =
    span >= 120 ? `last ${span / 60} minutes` : "last minute";

  const x = (at) => left + plotW - (plotW * (now - at)) / span;
  const y = (value) => top + plotH - (plotH * value) / max;
  for (const [key, color] of series) {
    const visible = points.filter((point) => now - point.at <= span);
    if (!visible.length) continue;
    g.strokeStyle = css(color);
    g.lineWidth = 1.8;
    g.lineJoin = "round";
    g.beginPath();
    visible.forEach((point, index) => {
      if (index) g.lineTo(x(point.at), y(point[key]));
      else g.moveTo(x(point.at), y(point[key]));
    });
    g.stroke();
    // A soft fill under the line makes the busiest series easy to follow.
    const fill = g.createLinearGradient(0, top, 0, top + plotH);
    fill.addColorStop(0, css(color) + "33");
    fill.addColorStop(1, css(color) + "00");
    g.lineTo(x(visible[visible.length - 1].at), top + plotH);
    g.lineTo(x(visible[0].at), top + plotH);
    g.closePath();
    g.fillStyle = fill;
    g.fill();
  }
  // What the browser tests read: how many points are drawn and the latest value of each series.
  canvas.dataset.points = String(points.length);
  for (const [key] of series) canvas.dataset[key] = points.length ? String(points[points.length - 1][key]) : "0";
  canvas.dataset.max = String(max);
}

// -- tables --------------------------------------------------------------------------------------------------

function renderFunctions(functions) {
  const body = $("#functions tbody");
  const rows = [...functions].sort((a, b) => b.queued + b.running - (a.queued + a.running) || a.name.localeCompare(b.name));
  const deepest = Math.max(1, ...rows.map((f) => f.queued));
  body.replaceChildren(
    ...rows.map((f) => {
      const tr = document.createElement("tr");
      tr.dataset.function = f.name;
      cell(tr, f.name, "name");
      const queued = cell(tr, "", "num queued" + (f.queued && !f.workers ? " hot" : ""));
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.round((40 * f.queued) / deepest) + "px";
      queued.append(bar, document.createTextNode(number(f.queued)));
      cell(tr, number(f.running), "num running");
      cell(tr, number(f.workers), "num workers");
      cell(tr, rate(f.rates.submitted), "num");
      cell(tr, rate(f.rates.completed), "num completed-rate");
      cell(tr, rate(f.rates.failed), "num" + (f.rates.failed ? " bad" : ""));
      cell(tr, number(f.completed), "num completed");
      const failed = f.failed + f.exceptions + f.timed_out + f.cancelled + f.dead_lettered;
      cell(tr, number(failed), "num failed" + (failed ? " bad" : ""));
      cell(tr, duration(f.wait.p50), "num");
      cell(tr, duration(f.wait.p99), "num");
      cell(tr, duration(f.run.p50), "num");
      cell(tr, duration(f.run.p99), "num");
      return tr;
    })
  );
  $("#functions-empty").hidden = rows.length > 0;
  $("#function-count").textContent = rows.length ? String(rows.length) : "";
}

function renderWorkers(workers) {
  $("#workers tbody").replaceChildren(
    ...workers.map((w) => {
      const tr = document.createElement("tr");
      cell(tr, w.client_id === null ? "–" : w.client_id, "name client-id");
      cell(tr, w.address, "");
      const functions = cell(tr, "", "functions");
      for (const name of w.functions) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = name;
        functions.appendChild(tag);
      }
      cell(tr, String(w.running.length), "num");
      return tr;
    })
  );
  $("#workers-empty").hidden = workers.length > 0;
  $("#worker-count").textContent = workers.length ? String(workers.length) : "";
}

function renderDead(letters) {
  $("#dead tbody").replaceChildren(
    ...letters.map((d) => {
      const tr = document.createElement("tr");
      tr.dataset.handle = d.handle;
      cell(tr, d.handle, "name");
      cell(tr, d.function, "name");
      cell(tr, d.unique || "–", "name");
      cell(tr, String(d.retries), "num");
      const buttons = cell(tr, "", "buttons");
      buttons.append(button("Requeue", "requeue", d.handle), button("Purge", "purge danger", d.handle));
      return tr;
    })
  );
  $("#dead-empty").hidden = letters.length > 0;
  $("#dead-count").textContent = letters.length ? String(letters.length) : "";
  $("#requeue-all").disabled = $("#purge-all").disabled = letters.length === 0;
}

function button(label, className, handle) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = className;
  b.addEventListener("click", () => change(handle, className.split(" ")[0], b));
  return b;
}

async function change(handle, action, source) {
  if (source) source.disabled = true;
  try {
    const response = await fetch(`api/dead-letters/${encodeURIComponent(handle)}/${action}`, { method: "POST" });
    const body = await response.json();
    toast(response.ok ? `${action}d ${body[action + "d"]} dead letter(s)` : `refused: ${body.error}`);
  } catch (error) {
    toast(`failed: ${error}`);
  }
  refresh();
}

function toast(message) {
  const element = $("#toast");
  element.textContent = message;
  element.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => element.classList.remove("show"), 2500);
}

// -- polling -------------------------------------------------------------------------------------------------

async function get(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function refresh() {
  try {
    const [status, workers, dead] = await Promise.all([get("api/status"), get("api/workers"), get("api/dead-letters")]);
    const server = status.server;
    const last = status.history[status.history.length - 1] || { completed: 0, submitted: 0, failed: 0, queued: 0, running: 0 };
    $("#version").textContent = server.version;
    $("#tile-completed").textContent = rate(last.completed);
    $("#tile-submitted").textContent = rate(last.submitted);
    $("#tile-failed").textContent = rate(last.failed);
    $("#tile-queued").textContent = number(status.functions.reduce((sum, f) => sum + f.queued, 0));
    $("#tile-running").textContent = number(status.functions.reduce((sum, f) => sum + f.running, 0));
    $("#tile-workers").textContent = number(server.workers);
    $("#tile-connections").textContent = number(server.connections);
    $("#tile-uptime").textContent = uptime(server.uptime);
    drawChart($("#throughput"), status.history, SERIES.throughput);
    drawChart($("#depth"), status.history, SERIES.depth);
    renderFunctions(status.functions);
    renderWorkers(workers);
    renderDead(dead);
    $("#connection").textContent = "live";
    $("#connection").className = "pill live";
  } catch (error) {
    $("#connection").textContent = "server unreachable";
    $("#connection").className = "pill down";
  }
}

$("#requeue-all").addEventListener("click", (event) => change("all", "requeue", event.target));
$("#purge-all").addEventListener("click", (event) => change("all", "purge", event.target));
refresh();
setInterval(refresh, POLL_MS);
