// The Switchboard console: renders the snapshots egress streams from
// /console/api/events (see internal/console). Plain DOM, no library; every
// text from the server goes through textContent, never innerHTML.
"use strict";

const $ = (id) => document.getElementById(id);

// el builds an element: el("td", {class: "num"}, "12").
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(headers, rows, empty) {
  if (rows.length === 0) return el("p", {class: "empty"}, empty);
  const head = el("tr", null, ...headers.map((h) => el("th", {class: h.endsWith("#") ? "num" : null}, h.replace(/#$/, ""))));
  return el("table", null, el("thead", null, head), el("tbody", null, ...rows));
}

const num = (v) => el("td", {class: "num"}, v);
const fmt = (n, d = 0) => (n === undefined || n === null ? "–" : Number(n).toLocaleString("en-US", {maximumFractionDigits: d, minimumFractionDigits: d}));
const fmtMS = (ms) => (ms > 0 ? fmt(ms, ms < 10 ? 1 : 0) + " ms" : "–");
const ago = (t, now) => {
  const s = Math.max(0, (new Date(now) - new Date(t)) / 1000);
  return s < 60 ? fmt(s, 1) + " s" : fmt(s / 60, 1) + " min";
};
const replace = (id, node) => $(id).replaceChildren(node);
const parts = (m) => Object.keys(m || {}).sort().map((t) => t + " [" + m[t].join(", ") + "]").join("; ") || "none";

function render(s) {
  $("updated").textContent = "updated " + new Date(s.at).toLocaleTimeString();
  const problems = Object.entries(s.problems || {}).map(([k, v]) => el("li", null, k + ": " + v));
  $("problems").replaceChildren(...problems);

  const sumEnd = (pred) => s.topics.filter((t) => pred(t.name)).reduce((a, t) => a + t.partitions.reduce((b, p) => b + p.end, 0), 0);
  $("sum-requests").textContent = fmt(sumEnd((n) => /requests\.(interactive|batch)$/.test(n)));
  $("sum-results").textContent = fmt(sumEnd((n) => /results$/.test(n)));
  const last = s.series.length ? s.series[s.series.length - 1] : null;
  $("sum-rps").textContent = last ? fmt(last.rps) : "–";
  const withP99 = s.series.filter((p) => p.p99_ms > 0);
  $("sum-p99").textContent = withP99.length ? fmtMS(withP99[withP99.length - 1].p99_ms) : "–";
  $("sum-lag").textContent = s.groups.length && s.groups[0].lag >= 0 ? fmt(s.groups[0].lag) : "–";
  const routers = s.instances.filter((i) => i.router && !i.stale);
  $("sum-inflight").textContent = fmt(routers.reduce((a, i) => a + i.router.in_flight, 0));
  $("sum-open").textContent = fmt(routers.reduce((a, i) => a + (i.router.backends || []).filter((b) => b.breaker === "open").length, 0));
  $("sum-dead").textContent = fmt(s.dead_letters_seen);

  drawChart(s.series);
  renderGroups(s);
  renderAdmission(s);
  renderBackends(s);
  renderInflight(s);
  renderTopics(s);
  renderDeadLetters(s);
}

function renderGroups(s) {
  const out = document.createDocumentFragment();
  for (const g of s.groups) {
    out.append(el("p", null, el("b", null, g.name), " — state " + (g.state || "?") + (g.protocol ? ", " + g.protocol : "") +
      ", lag " + (g.lag >= 0 ? fmt(g.lag) : "unknown") + (g.error ? " — " + g.error : "")));
    out.append(table(["member", "client", "host", "partitions"], g.members.map((m) =>
      el("tr", {"data-member": m.member_id}, el("td", null, m.instance_id || m.member_id), el("td", null, m.client_id),
        el("td", null, m.host), el("td", null, parts(m.partitions)))), "no members"));
  }
  replace("groups", out);
}

function renderAdmission(s) {
  const rows = [];
  for (const i of s.instances.filter((i) => i.ingress)) {
    const lanes = i.ingress.lanes || [];
    if (!i.ingress.admission) {
      rows.push(el("tr", null, el("td", null, i.instance), el("td", null, "off"), el("td"), num(""), num(""), num("")));
    }
    for (const l of lanes) {
      const state = l.shedding ? "shedding" : "admitting";
      rows.push(el("tr", {"data-lane": l.lane}, el("td", {class: i.stale ? "stale" : null}, i.instance + (i.stale ? " (stale)" : "")),
        el("td", null, l.lane), el("td", {class: state}, state), num(fmt(l.lag)), num(fmt(l.low) + " / " + fmt(l.high)), num(fmt(l.drain_per_sec, 1))));
    }
  }
  replace("admission", table(["ingress", "lane", "state", "lag#", "low / high#", "drain/s#"], rows, "no ingress status records"));
}

function renderBackends(s) {
  const rows = [];
  for (const i of s.instances.filter((i) => i.router)) {
    const r = i.router;
    for (const b of r.backends || []) {
      rows.push(el("tr", {"data-backend": b.name, "data-instance": i.instance},
        el("td", null, b.name), el("td", null, (b.models || []).join(", ")),
        el("td", {class: "breaker breaker-" + b.breaker}, b.breaker),
        num(fmt(b.in_flight) + " / " + fmt(b.max_concurrency)),
        num((b.requests_per_minute ? fmt(b.requests_per_minute) : "∞") + " / " + (b.tokens_per_minute ? fmt(b.tokens_per_minute) : "∞")),
        num(fmt(b.calls)), num(fmt(b.failures)), num(fmtMS(b.p50_ms)), num(fmtMS(b.p99_ms)),
        el("td", {class: i.stale ? "stale" : null}, i.instance + (i.stale ? " (stale)" : "") + (r.system === "open" ? " — system breaker open" : ""))));
    }
  }
  replace("backends", table(["backend", "models", "breaker", "in flight#", "req / tok per min#", "calls (1 min)#", "failures#", "p50#", "p99#", "router-worker"],
    rows, "no router-worker status records"));
}

function renderInflight(s) {
  const rows = [];
  let total = 0;
  for (const i of s.instances.filter((i) => i.router && !i.stale)) {
    total += i.router.in_flight;
    for (const c of i.router.conversations || []) {
      rows.push(el("tr", null, el("td", null, c.id), el("td", null, c.topic + "[" + c.partition + "]"), num(fmt(c.offset)),
        num(ago(c.since, s.at)), el("td", null, i.instance)));
    }
  }
  const note = el("p", null, fmt(total) + " in flight" + (rows.length < total ? ", the longest-running " + rows.length + " listed" : ""));
  const frag = document.createDocumentFragment();
  frag.append(note, table(["conversation", "partition", "offset#", "running#", "router-worker"], rows, "none"));
  replace("inflight", frag);
}

function renderTopics(s) {
  const groups = s.groups.map((g) => g.name);
  const frag = document.createDocumentFragment();
  const rows = s.topics.map((t) => {
    const end = t.partitions.reduce((a, p) => a + p.end, 0);
    const lag = groups.map((g) => {
      const ls = t.partitions.map((p) => (p.lag || {})[g]).filter((v) => v !== undefined);
      return num(ls.length ? fmt(ls.reduce((a, v) => a + Math.max(0, v), 0)) : "");
    });
    return el("tr", {"data-topic": t.name}, el("td", null, t.name), num(t.partitions.length), num(fmt(end)), num(fmt(t.rate, 1)), ...lag);
  });
  frag.append(table(["topic", "partitions#", "records#", "records/s#", ...groups.map((g) => "lag " + g + "#")], rows, "no topics read yet"));
  for (const t of s.topics) {
    const prow = t.partitions.map((p) => el("tr", null, num(p.partition), num(fmt(p.end)), num(fmt(p.rate, 1)),
      ...groups.map((g) => num((p.lag || {})[g] !== undefined ? fmt(p.lag[g]) : ""))));
    frag.append(el("details", null, el("summary", null, t.name + " by partition"),
      table(["partition#", "end offset#", "records/s#", ...groups.map((g) => "lag " + g + "#")], prow, "no partitions")));
  }
  replace("topics", frag);
}

function renderDeadLetters(s) {
  const rows = s.dead_letters.map((d) => el("tr", null, el("td", null, new Date(d.at).toLocaleTimeString()),
    el("td", null, d.reason), el("td", null, d.detail), el("td", null, d.request_id || ""),
    el("td", null, d.source_topic ? d.source_topic + "[" + d.source_partition + "]@" + d.source_offset : "")));
  replace("deadletters", table(["time", "reason", "detail", "request", "source"], rows, "none"));
}

function drawChart(series) {
  const c = $("chart");
  const ctx = c.getContext("2d");
  const w = c.width, h = c.height, padL = 44, padR = 56, padT = 10, padB = 20;
  ctx.clearRect(0, 0, w, h);
  const maxRate = Math.max(1, ...series.map((p) => p.rps));
  const maxP99 = Math.max(1, ...series.map((p) => p.p99_ms));
  const n = Math.max(1, series.length);
  const x = (i) => padL + (i + 0.5) * (w - padL - padR) / n;
  const bw = Math.max(1, (w - padL - padR) / n - 1);
  const yRate = (v) => h - padB - v / maxRate * (h - padT - padB);
  const yP99 = (v) => h - padB - v / maxP99 * (h - padT - padB);
  ctx.strokeStyle = "#d8dee4";
  ctx.strokeRect(padL, padT, w - padL - padR, h - padT - padB);
  series.forEach((p, i) => {
    ctx.fillStyle = "#1f6feb";
    ctx.fillRect(x(i) - bw / 2, yRate(p.rps), bw, h - padB - yRate(p.rps));
    if (p.failed > 0) {
      ctx.fillStyle = "#cf222e";
      ctx.fillRect(x(i) - bw / 2, yRate(p.failed), bw, h - padB - yRate(p.failed));
    }
  });
  ctx.strokeStyle = "#bf8700";
  ctx.lineWidth = 2;
  ctx.beginPath();
  let started = false;
  series.forEach((p, i) => {
    if (!(p.p99_ms > 0)) { started = false; return; }
    if (started) ctx.lineTo(x(i), yP99(p.p99_ms)); else ctx.moveTo(x(i), yP99(p.p99_ms));
    started = true;
  });
  ctx.stroke();
  ctx.fillStyle = "#bf8700";
  series.forEach((p, i) => {
    if (p.p99_ms > 0) ctx.fillRect(x(i) - 2, yP99(p.p99_ms) - 2, 4, 4);
  });
  ctx.lineWidth = 1;
  ctx.fillStyle = "#5b6570";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(fmt(maxRate) + "/s", 2, padT + 10);
  ctx.fillText("0", padL - 12, h - padB);
  ctx.fillText(fmt(maxP99) + " ms", w - padR + 4, padT + 10);
  ctx.fillText("-2 min", padL, h - 4);
  ctx.fillText("now", w - padR - 20, h - 4);
}

function connect() {
  const es = new EventSource("api/events");
  es.addEventListener("snapshot", (e) => {
    $("conn").textContent = "live";
    $("conn").className = "conn live";
    render(JSON.parse(e.data));
  });
  es.onerror = () => {
    $("conn").textContent = "reconnecting…";
    $("conn").className = "conn down";
  };
}

connect();
