// The redisrpc dashboard: reads /api/state twice a second and draws every
// service; with actions allowed, calls functions and handles dead letters.
"use strict";

const main = document.getElementById("services");
const status = document.getElementById("status");
const cards = new Map(); // queue -> card element, kept so forms keep their input

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function dur(us) {
  if (!us) return "-";
  if (us < 1000) return us + " µs";
  if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + " ms";
  return (us / 1e6).toFixed(2) + " s";
}

function ago(s) {
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h";
}

function codes(errors) {
  const parts = Object.entries(errors || {}).filter(([, n]) => n > 0).map(([c, n]) => (c || "no code") + " " + n);
  return parts.length ? parts.join(", ") : "-";
}

function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, head.map(h => el("th", {}, h)))),
    el("tbody", {}, rows.map(r => el("tr", {}, r.map(c => el("td", {}, c))))));
}

// chart draws values over time as a small SVG line.
function chart(label, points, value, format) {
  const w = 320, h = 80, pad = 4;
  const vs = points.map(value);
  const maxV = Math.max(1, ...vs);
  const t0 = points.length ? points[0].t : 0, t1 = points.length ? points[points.length - 1].t : 1;
  const x = t => pad + (w - 2 * pad) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
  const y = v => h - pad - (h - 2 * pad) * v / maxV;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.map((p, i) => `${x(p.t).toFixed(1)},${y(vs[i]).toFixed(1)}`).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2f5fd0");
  line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  const last = vs.length ? vs[vs.length - 1] : 0;
  const span = (t1 - t0) / 1000;
  const over = span < 90 ? Math.round(span) + " s" : Math.round(span / 60) + " min";
  return el("div", {class: "chart"}, el("div", {class: "label"}, `${label}: ${format(last)} (max ${format(maxV)}, over ${over})`), svg);
}

async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json", "X-Redisrpc-Action": "1"}, body: JSON.stringify(body)});
  const out = await r.json();
  if (!r.ok) throw new Error(out.error || r.statusText);
  return out;
}

// metaPairs reads "key=value, key=value" into an object, or throws.
function metaPairs(text) {
  const meta = {};
  for (const pair of text.split(",").map(p => p.trim()).filter(p => p !== "")) {
    const i = pair.indexOf("=");
    if (i < 1) throw new Error(`metadata: want key=value, got "${pair}"`);
    meta[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  return meta;
}

// callForm is a service's form for calling a function by hand: it shows
// the chosen function's members and starts from an example request.
function callForm(svc) {
  const result = el("div", {class: "result", id: "result-" + svc.queue});
  const select = el("select", {name: "function"});
  const args = el("input", {name: "args", placeholder: 'arguments: JSON values, as [5] or {"name": "Ann"}'});
  const meta = el("input", {name: "meta", class: "meta", placeholder: "metadata: key=value, key=value"});
  const members = el("div", {class: "members"});
  let functions = svc.functions, example = "";
  // show describes the chosen function, and puts its example in the form
  // unless the form holds something else already.
  const show = () => {
    const f = functions.find(f => f.name === select.value);
    members.replaceChildren();
    if (!f) return;
    if (f.request_members) members.append(el("div", {}, "request ", el("code", {}, f.request_members)));
    if (f.response_members) members.append(el("div", {}, f.stream ? "stream of " : "response ", el("code", {}, f.response_members)));
    const next = f.example !== undefined ? JSON.stringify(f.example) : "";
    if (args.value === "" || args.value === example) args.value = next;
    example = next;
  };
  select.addEventListener("change", show);
  const form = el("form", {class: "call", onsubmit: async ev => {
    ev.preventDefault();
    let parsed;
    try {
      parsed = args.value.trim() === "" ? [] : JSON.parse(args.value);
    } catch (e) {
      result.className = "result failed";
      result.textContent = "the arguments are not JSON: " + e.message;
      return;
    }
    const body = {queue: svc.queue, function: select.value};
    try {
      const m = metaPairs(meta.value);
      if (Object.keys(m).length) body.meta = m;
    } catch (e) {
      result.className = "result failed";
      result.textContent = e.message;
      return;
    }
    if (Array.isArray(parsed)) body.args = parsed; else if (parsed !== null && typeof parsed === "object") body.kwargs = parsed; else body.args = [parsed];
    result.className = "result";
    result.textContent = "calling…";
    try {
      const out = await post("/api/call", body);
      result.className = "result " + (out.ok ? "ok" : "failed");
      result.textContent = out.ok ? "→ " + JSON.stringify(out.result)
        : (out.code ? out.code + ": " : "") + out.message + (out.details !== undefined ? "\ndetails: " + JSON.stringify(out.details) : "");
    } catch (e) {
      result.className = "result failed";
      result.textContent = e.message;
    }
  }}, el("label", {}, "call "), select, args, meta, el("button", {type: "submit"}, "Call"), members);
  // update takes the functions of a fresh state, keeping the choice.
  const update = fs => {
    functions = fs;
    const cur = select.value;
    select.replaceChildren(...fs.map(f => el("option", {value: f.name}, f.name)));
    if (fs.some(f => f.name === cur)) select.value = cur;
    show();
  };
  return {form, select, result, update};
}

function render(state) {
  status.className = state.error ? "error" : "";
  status.textContent = state.error ? "Redis: " + state.error + " (retrying)"
    : `${state.services.length} services · updated ${new Date(state.updated).toLocaleTimeString()}` + (state.actions ? " · actions on" : "");
  if (!state.services.length) {
    if (!cards.size) main.replaceChildren(el("p", {class: "empty"}, "No service has run in the last day."));
    return;
  }
  const seen = new Set();
  for (const svc of state.services) {
    seen.add(svc.queue);
    let card = cards.get(svc.queue);
    if (!card) {
      card = {root: el("section", {class: "service", id: "service-" + svc.queue}), body: el("div")};
      if (state.actions) {
        card.call = callForm(svc);
        card.deadResult = el("div", {class: "result dead-result"});
      }
      card.root.append(card.body);
      if (card.call) card.root.append(el("h3", {}, "Call a function"), card.call.form, card.call.result);
      cards.set(svc.queue, card);
      if (main.querySelector(".empty")) main.replaceChildren();
      main.append(card.root);
    }
    if (card.call) card.call.update(svc.functions);
    card.body.replaceChildren(...body(svc, state.actions, card.deadResult));
  }
  for (const [queue, card] of cards) {
    if (!seen.has(queue)) { card.root.remove(); cards.delete(queue); }
  }
}

function body(svc, actions, deadResult) {
  const parts = [
    el("h2", {}, svc.queue),
    el("div", {class: "facts"},
      svc.servers.length ? el("span", {}, el("b", {}, svc.servers.length), " live servers") : el("span", {class: "down"}, "no live server"),
      el("span", {}, el("b", {}, svc.rate.toFixed(1)), " calls/s"),
      el("span", {}, el("b", {}, svc.error_rate.toFixed(1)), " errors/s"),
      el("span", {}, "p99 handling ", el("b", {}, dur(svc.p99_us))),
      el("span", {}, el("b", {}, svc.depth), " waiting" + (svc.oldest_ms ? `, the oldest for ${(svc.oldest_ms / 1000).toFixed(1)} s` : "")),
      el("span", {}, "errors since start: ", el("b", {}, codes(svc.errors)))),
    el("div", {class: "charts"},
      chart("calls/s", svc.history, p => p.rate, v => v.toFixed(1)),
      chart("p99 handling time", svc.history, p => p.p99_us, dur)),
  ];
  if (svc.servers.length) {
    parts.push(el("h3", {}, "Servers"), table(["server", "host", "pid", "up", "mode", "concurrency", "shards", "in flight", "version"],
      svc.servers.map(s => [s.id, s.host, s.pid, ago(s.uptime_s), s.mode, s.concurrency, s.shards, s.in_flight, s.version])));
  }
  parts.push(el("h3", {}, "Functions"), table(["function", "request", "response", "calls", "errors", "p50", "p99"],
    svc.functions.map(f => [f.name, el("code", {}, f.request), f.stream ? el("span", {}, "stream of ", el("code", {}, f.response)) : el("code", {}, f.response),
      f.calls, codes(f.errors), dur(f.p50_us), dur(f.p99_us)])));
  if (svc.processing && svc.processing.length) {
    parts.push(el("h3", {}, "Processing lists"), table(["server", "list", "requests", "server state"],
      svc.processing.map(p => [p.Server, p.List, p.Requests, p.Live ? "live" : "gone: given back at the next beat"])));
  }
  if (svc.dead.length) {
    const rows = svc.dead.map(d => [d.ref, new Date(d.at).toLocaleString(), d.deliveries, d.function, d.id,
      d.answered ? el("span", {class: "down"}, "told it failed") : "-",
      el("code", {}, d.request.length > 80 ? d.request.slice(0, 80) + "…" : d.request),
      actions ? el("button", {class: "plain requeue", onclick: () => requeue(svc.queue, [d], deadResult)}, "requeue") : ""]);
    parts.push(el("h3", {}, `Dead letters (${svc.dead.length})`), table(["ref", "at", "deliveries", "function", "id", "caller", "request", ""], rows),
      el("div", {class: "note"}, svc.dead[0].why));
    if (svc.dead.some(d => d.answered)) {
      parts.push(el("div", {class: "note"}, "told it failed: the caller got internal when the request became a dead letter, " +
        "and may have undone its work; requeuing runs the request again all the same."));
    }
    if (actions) {
      const shown = svc.dead.slice();
      parts.push(el("div", {}, el("button", {class: "plain requeue-all", onclick: () => requeue(svc.queue, shown, deadResult)}, "requeue all"), " ",
        el("button", {class: "plain", onclick: () => { if (confirm("Delete the dead letters of " + svc.queue + "?")) post("/api/dead/purge", {queue: svc.queue}); }}, "purge")));
    }
  }
  if (deadResult && (svc.dead.length || deadResult.textContent)) parts.push(deadResult);
  return parts;
}

// named says which request a dead letter holds, for a person.
function named(d) {
  return `${d.function || "an unreadable request"} (id ${d.id || "none"})`;
}

// requeue requeues the dead letters shown, by ref, so that none that arrived
// since takes their place. Those whose callers were told they failed run
// again only once the person confirmed it, naming what will run.
async function requeue(queue, dead, result) {
  const answered = dead.filter(d => d.answered);
  if (answered.length) {
    const what = answered.map(named).join(", ");
    const ask = dead.length === 1
      ? `Requeue ${what}?\n\nIts caller was told it failed (internal) and may have undone its work. Requeuing runs ${what} again.`
      : `Requeue the ${dead.length} dead letters of ${queue} shown?\n\n${answered.length} of them were answered: their callers were told ` +
        `they failed (internal) and may have undone their work. Requeuing runs them again: ${what}.`;
    if (!confirm(ask)) return;
  }
  result.className = "result dead-result";
  result.textContent = "requeuing…";
  try {
    const out = await post("/api/dead/requeue", {queue, refs: dead.map(d => d.ref), force: answered.length > 0});
    let text = `requeued ${out.requeued} of ${dead.length}`;
    if (out.gone.length) text += `; ${out.gone.length} gone since shown (requeued or purged): ${out.gone.join(", ")}`;
    if (out.refused.length) text += `; refused ${out.refused.length} whose callers were told they failed: ${out.refused.join(", ")}`;
    result.className = "result dead-result " + (out.requeued === dead.length ? "ok" : "failed");
    result.textContent = text;
  } catch (e) {
    result.className = "result dead-result failed";
    result.textContent = e.message;
  }
}

async function poll() {
  try {
    const r = await fetch("/api/state", {cache: "no-store"});
    render(await r.json());
  } catch (e) {
    status.className = "error";
    status.textContent = "the dashboard is not answering: " + e.message;
  }
  setTimeout(poll, 500);
}
poll();
