// boosterd HMI page script: copies the server's live view into the page (text only,
// never HTML), rebuilds the active alarm list, and draws the trends. No build step.
"use strict";

const ABNORMAL = ["bad", "abn", "run", "fault"];

function applyView(view) {
  for (const el of document.querySelectorAll("[data-live]")) {
    const text = view.fields[el.dataset.live];
    if (text !== undefined && el.textContent !== text) el.textContent = text;
  }
  for (const el of document.querySelectorAll("[data-cls]")) {
    const cls = view.classes[el.dataset.cls];
    if (cls === undefined) continue;
    for (const c of ABNORMAL) el.classList.toggle(c, c === cls);
  }
  const box = document.getElementById("alarm-box");
  if (box) renderAlarms(box, view.alarms);
  document.body.dataset.seq = String(view.seq);
}

function csrfToken() {
  const input = document.querySelector("input[name=csrf]");
  return input ? input.value : "";
}

function hidden(name, value) {
  const input = document.createElement("input");
  input.type = "hidden"; input.name = name; input.value = value;
  return input;
}

function renderAlarms(box, alarms) {
  const key = JSON.stringify(alarms);
  if (box.dataset.shown === key) return;
  box.dataset.shown = key;
  box.replaceChildren();
  if (!alarms.length) {
    const p = document.createElement("p");
    p.className = "none"; p.id = "no-alarms"; p.textContent = box.dataset.noneLabel;
    box.append(p);
    return;
  }
  const table = document.createElement("table");
  table.className = "alarms"; table.id = "active-alarms";
  for (const a of alarms) {
    const tr = table.insertRow();
    tr.className = a.cls; tr.dataset.alarmRow = a.id;
    tr.insertCell().textContent = a.severity;
    const text = tr.insertCell();
    const detail = document.createElement("small");
    detail.className = "detail"; detail.textContent = a.detail;
    text.append(a.text, document.createElement("br"), detail);
    const code = document.createElement("code"); code.textContent = a.id;
    tr.insertCell().append(code);
    const cell = tr.insertCell();
    if (a.acked) {
      cell.textContent = box.dataset.ackedLabel;
    } else if (box.dataset.ack === "1") {
      const form = document.createElement("form");
      form.method = "post"; form.action = "/cmd/ack"; form.className = "inline";
      form.append(hidden("csrf", csrfToken()), hidden("alarm", a.id),
                  hidden("next", box.dataset.next || "/alarms"));
      const button = document.createElement("button");
      button.type = "submit"; button.className = "ack"; button.dataset.alarm = a.id;
      button.textContent = box.dataset.ackLabel;
      form.append(button);
      cell.append(form);
    }
  }
  box.append(table);
}

function live() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/events");
  source.onmessage = (msg) => {
    if (conn) conn.hidden = true;
    applyView(JSON.parse(msg.data));
  };
  source.addEventListener("expired", () => { source.close(); window.location.assign("/login"); });
  source.onerror = () => {
    if (conn) { conn.hidden = false; conn.textContent = "\u26A0 " + conn.dataset.offline; }
  };
}

// -- trends --------------------------------------------------------------------------------

const COLOURS = { discharge: "#212121", suction: "#757575", setpoint: "#1565c0",
                  flow: "#5d4037", pumps: "#9e9e9e", speed: "#455a64" };

function drawTrend(canvas, data, series) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 36;
  ctx.clearRect(0, 0, w, h);
  const t = data.t;
  if (!t.length) return false;
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const v of data[s]) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo)) return false;
  if (hi - lo < 1e-6) { hi += 1; lo -= 1; }
  const t0 = t[0], t1 = Math.max(t[t.length - 1], t0 + 1);
  const x = (v) => pad + (v - t0) / (t1 - t0) * (w - pad - 8);
  const y = (v) => h - 18 - (v - lo) / (hi - lo) * (h - 30);
  ctx.strokeStyle = "#bdbdbd"; ctx.fillStyle = "#424242"; ctx.font = "12px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad, y(v)); ctx.lineTo(w - 8, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(1), 2, y(v) + 4);
  }
  const fmt = (s) => new Date(s * 1000).toLocaleString([], { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  ctx.fillText(fmt(t0), pad, h - 2);
  ctx.fillText(fmt(t1), w - 110, h - 2);
  for (const s of series) {
    ctx.strokeStyle = COLOURS[s]; ctx.lineWidth = 2; ctx.beginPath();
    let pen = false;
    data[s].forEach((v, i) => {
      if (v === null) { pen = false; return; }
      if (pen) ctx.lineTo(x(t[i]), y(v)); else ctx.moveTo(x(t[i]), y(v));
      pen = true;
    });
    ctx.stroke();
    ctx.fillStyle = COLOURS[s];  // a lone point (the first minute) as a dot
    data[s].forEach((v, i) => {
      const alone = v !== null && (data[s][i - 1] ?? null) === null && (data[s][i + 1] ?? null) === null;
      if (alone) { ctx.beginPath(); ctx.arc(x(t[i]), y(v), 3, 0, 2 * Math.PI); ctx.fill(); }
    });
  }
  return true;
}

async function loadTrend(span) {
  for (const b of document.querySelectorAll("button.span")) {
    b.setAttribute("aria-pressed", String(b.dataset.span === span));
  }
  const response = await fetch("/api/trend?span=" + encodeURIComponent(span), { credentials: "same-origin" });
  if (!response.ok) return;
  const data = await response.json();
  const a = drawTrend(document.getElementById("trend-pressure"), data, ["discharge", "suction", "setpoint"]);
  const b = drawTrend(document.getElementById("trend-flow"), data, ["flow", "pumps", "speed"]);
  document.getElementById("trend-empty").hidden = a || b;
  document.body.dataset.trendPoints = String(data.t.length);
}

function trends() {
  let span = "hour";
  for (const b of document.querySelectorAll("button.span")) {
    b.addEventListener("click", () => { span = b.dataset.span; loadTrend(span); });
  }
  loadTrend(span);
  setInterval(() => loadTrend(span), 60000);
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "/login") return;
  if (page === "/trends") trends();
  if (document.querySelector("[data-live], #alarm-box")) live();
});
