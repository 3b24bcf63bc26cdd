// Harambee dashboard: fills the page from the JSON API and keeps it live with server-sent
// events. Everything the page shows comes from /api; names are set as text, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let deadlineMs = null;

function text(id, value) {
  $(id).textContent = value;
}

function short(hex) {
  return hex && hex.length > 16 ? hex.slice(0, 16) + "…" : hex || "–";
}

function ago(ms) {
  if (ms == null) return "not counted alive";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 2 ? "just now" : s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

function number(x) {
  return Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(2);
}

function percent(x) {
  return x == null ? "–" : (100 * x).toFixed(1) + "%";
}

async function loadFederation() {
  const response = await fetch("/api/federation");
  if (!response.ok) throw new Error("GET /api/federation: " + response.status);
  const f = await response.json();
  document.title = f.name + " · Harambee";
  text("fed-name", f.name);
  text("fed-task", f.charter.task);
  text("fed-id", f.federation_id);
  text("charter-hash", f.charter_sha256);
  text("fed-strategy", f.strategy + ", " + f.rounds + " rounds, quorum " + f.quorum +
    ", deadline " + f.deadline_s + " s");
  text("charter-rules", "strategies " + f.charter.strategies.join(", ") +
    "; quorum at least " + f.charter.min_quorum + "; deadline at most " + f.charter.max_deadline_s +
    " s; at most " + f.charter.max_rounds + " rounds; amendments need " +
    f.charter.amendment_threshold + " steward signature(s)");
  text("charter-licences", "data: " + f.charter.data_licence + "; model: " + f.charter.model_licence);
  text("charter-enrolment", f.charter.enrolment === "members" ?
    "only the charter's named members" : "anyone holding the invite");
  const list = $("stewards");
  list.replaceChildren();
  for (const s of f.stewards) {
    const li = document.createElement("li");
    li.textContent = s.name + ": " + s.public_key;
    list.append(li);
  }
  if (f.stewards.length === 0) {
    const li = document.createElement("li");
    li.textContent = "none named: no one can pause, resume or remove members";
    list.append(li);
  }
}

function renderRound(r) {
  text("round-number", String(r.round));
  text("round-total", String(r.rounds));
  const phase = $("phase");
  const label = r.paused && r.phase === "training" ? "training, pausing after this round" : r.phase;
  phase.textContent = label;
  phase.className = "badge " + r.phase;
  let summary;
  if (r.phase === "training") {
    summary = r.received + " of " + r.selected.length + " selected participants have sent their update" +
      (r.attempt > 0 ? " (attempt " + (r.attempt + 1) + ")" : "") + ".";
  } else if (r.phase === "paused") {
    summary = "A steward paused the federation: no round opens until one resumes it.";
  } else if (r.phase === "waiting") {
    summary = "Waiting for enough participants to open the round.";
  } else if (r.phase === "finished") {
    summary = "Every round is done; the model is released.";
  } else {
    summary = "The federation failed: " + (r.error || "see the coordinator's log") + ".";
  }
  text("round-summary", summary);
  text("round-received", String(r.received));
  text("round-quorum", String(r.quorum));
  text("round-selected", r.selected.length ? r.selected.map((p) => "#" + p).join(", ") : "–");
  const progress = $("round-progress");
  progress.max = Math.max(1, r.quorum);
  progress.value = Math.min(r.received, progress.max);
  deadlineMs = r.phase === "training" ? r.deadline_ms : null;
  renderDeadline();
}

function renderDeadline() {
  if (deadlineMs == null) {
    text("round-deadline", "–");
    return;
  }
  const s = Math.max(0, Math.round((deadlineMs - Date.now()) / 1000));
  text("round-deadline", "closes in " + s + " s (" + new Date(deadlineMs).toLocaleTimeString() + ")");
}

function cell(row, value, className) {
  const td = document.createElement("td");
  td.textContent = value;
  if (className) td.className = className;
  row.append(td);
  return td;
}

function renderMembers(members) {
  text("members-count", String(members.length));
  const body = $("members").tBodies[0];
  body.replaceChildren();
  for (const m of members) {
    const row = document.createElement("tr");
    cell(row, String(m.id));
    cell(row, m.name);
    cell(row, m.waiting && m.state === "idle" ? "idle (waiting for a task)" : m.state, "state " + m.state);
    cell(row, m.state === "removed" ? "–" : ago(m.last_seen_ms)).dataset.seen = m.last_seen_ms ?? "";
    cell(row, m.role || "–");
    cell(row, short(m.public_key), "key").title = m.public_key;
    body.append(row);
  }
}

function renderLedger(head) {
  if (!head) return;
  text("head-size", String(head.size));
  text("head-root", head.root);
  text("head-time", new Date(head.timestamp_ms).toLocaleString());
  text("head-key", head.coordinator_key);
  text("head-verify", head.verify);
}

function renderPrivacy(p) {
  const card = $("privacy-card");
  card.hidden = !p;
  if (!p) return;
  text("privacy-spent", "ε = " + p.epsilon_spent.toFixed(3) + " of " + p.epsilon_budget +
    " spent (δ = " + p.delta + ")");
  const meter = $("privacy-meter");
  meter.max = p.epsilon_budget;
  meter.value = p.epsilon_spent;
}

function svg(name, attributes, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, String(v));
  parent.append(el);
  return el;
}

// The chart: accuracy (0 to 100%, left axis); training loss and, where participants report
// it, validation loss (0 to the larger maximum, right axis).
function renderChart(points) {
  const chart = $("chart");
  for (const el of [...chart.children]) {
    if (el.tagName !== "title" && el.tagName !== "desc") el.remove();
  }
  chart.dataset.points = String(points.length);
  const [w, h, left, right, top, bottom] = [640, 260, 44, 44, 12, 28];
  const n = Math.max(1, ...points.map((p) => p.round));
  const validated = points.filter((p) => p.validation_loss != null);
  const maxLoss = Math.max(1e-9, ...points.map((p) => p.train_loss),
    ...validated.map((p) => p.validation_loss));
  const x = (round) => left + (n === 1 ? (w - left - right) / 2 : (round - 1) * (w - left - right) / (n - 1));
  const yAcc = (a) => top + (1 - a) * (h - top - bottom);
  const yLoss = (l) => top + (1 - l / maxLoss) * (h - top - bottom);
  svg("line", { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, class: "axis" }, chart);
  svg("line", { x1: left, y1: top, x2: left, y2: h - bottom, class: "axis" }, chart);
  svg("line", { x1: w - right, y1: top, x2: w - right, y2: h - bottom, class: "axis" }, chart);
  for (const a of [0, 0.5, 1]) {
    svg("text", { x: left - 6, y: yAcc(a) + 4, "text-anchor": "end", class: "tick" }, chart)
      .textContent = (100 * a) + "%";
  }
  svg("text", { x: w - right + 6, y: yLoss(maxLoss) + 4, class: "tick" }, chart)
    .textContent = number(maxLoss);
  svg("text", { x: w - right + 6, y: yLoss(0) + 4, class: "tick" }, chart).textContent = "0";
  const step = Math.max(1, Math.ceil(n / 10));
  for (let r = 1; r <= n; r += step) {
    svg("text", { x: x(r), y: h - 8, "text-anchor": "middle", class: "tick" }, chart).textContent = String(r);
  }
  const rated = points.filter((p) => p.accuracy != null);
  svg("polyline", { class: "acc", points: rated.map((p) => x(p.round) + "," + yAcc(p.accuracy)).join(" ") }, chart);
  svg("polyline", { class: "loss", points: points.map((p) => x(p.round) + "," + yLoss(p.train_loss)).join(" ") }, chart);
  svg("polyline", { class: "val", points: validated.map((p) => x(p.round) + "," + yLoss(p.validation_loss)).join(" ") }, chart);
  for (const p of rated) {
    const dot = svg("circle", { cx: x(p.round), cy: yAcc(p.accuracy), r: 4, class: "acc", "data-round": p.round }, chart);
    svg("title", {}, dot).textContent = "round " + p.round + ": accuracy " + percent(p.accuracy);
  }
  for (const p of points) {
    const mark = svg("rect", { x: x(p.round) - 3.5, y: yLoss(p.train_loss) - 3.5, width: 7, height: 7, class: "loss", "data-round": p.round }, chart);
    svg("title", {}, mark).textContent = "round " + p.round + ": training loss " + number(p.train_loss);
  }
  for (const p of validated) {
    const ring = svg("circle", { cx: x(p.round), cy: yLoss(p.validation_loss), r: 3.5, class: "val", "data-round": p.round }, chart);
    svg("title", {}, ring).textContent = "round " + p.round + ": validation loss " + number(p.validation_loss);
  }
  const last = points[points.length - 1];
  text("chart-desc", last ?
    points.length + " rounds; round " + last.round + " has training loss " + number(last.train_loss) +
      (rated.length ? " and the latest accuracy is " + percent(rated[rated.length - 1].accuracy) : "") + "." :
    "No round has completed yet.");
  const body = $("rounds-table").tBodies[0];
  body.replaceChildren();
  for (const p of points) {
    const row = document.createElement("tr");
    cell(row, String(p.round));
    cell(row, percent(p.accuracy));
    cell(row, number(p.train_loss));
    cell(row, p.validation_loss == null ? "–" : number(p.validation_loss));
    body.append(row);
  }
}

function connect() {
  const status = $("connection");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => {
    status.textContent = "Live";
    status.className = "connection live";
  });
  events.addEventListener("error", () => {
    status.textContent = "Connection lost; reconnecting…";
    status.className = "connection lost";
  });
  events.addEventListener("overview", (e) => {
    const o = JSON.parse(e.data);
    renderRound(o.round);
    renderMembers(o.members);
    renderLedger(o.head);
    renderPrivacy(o.privacy);
  });
  events.addEventListener("chart", (e) => renderChart(JSON.parse(e.data)));
}

// Relative times ("3 s ago", "closes in 12 s") tick on between events.
function tick() {
  renderDeadline();
  for (const td of document.querySelectorAll("td[data-seen]")) {
    if (td.dataset.seen !== "") td.textContent = ago(Number(td.dataset.seen));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  loadFederation().catch((e) => text("fed-task", "could not load the federation: " + e.message));
  connect();
  setInterval(tick, 1000);
});
