// The supervisor console: live call list, per-call transcript, flags and actions.
// Everything heard on a call is inserted with textContent, never as HTML.
"use strict";

(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const CSRF = meta("csrf-token");
  const ROLE = meta("role");
  const CAN_ACT = meta("can-act") === "yes";
  const SEVERITY_ORDER = ["signal", "low", "medium", "high", "critical"];
  const BUTTONS = [
    { label: "Warn", action: "warn", leg: "agent" },
    { label: "Mute agent", action: "mute", leg: "agent" },
    { label: "Unmute", action: "unmute", leg: "agent" },
    { label: "Hang up", action: "hangup", leg: null, danger: true },
  ];

  const calls = new Map();
  let selected = null;
  let socket = null;
  let retryMs = 1000;

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function newCall(id) {
    return {
      id, adapter: "", mode: "", startedAt: null, agentId: null, ended: null,
      muted: new Set(), flags: [], actions: [], lines: [], open: { agent: null, customer: null },
    };
  }

  function getCall(id) {
    if (!calls.has(id)) calls.set(id, newCall(id));
    return calls.get(id);
  }

  // --- applying events to a call's state -------------------------------------------------------

  function apply(call, e) {
    switch (e.type) {
      case "call_start":
        call.adapter = e.adapter; call.mode = e.mode; call.startedAt = e.started_at; call.agentId = e.agent_id;
        break;
      case "partial":
      case "final":
        applyTranscript(call, e);
        break;
      case "flag":
        applyFlag(call, e);
        break;
      case "action":
        applyAction(call, e);
        break;
      case "error":
        call.actions.push({ action: "error", leg: null, actor: "pipeline", reason: `${e.stage}: ${e.error}` });
        break;
      case "call_end":
        call.ended = e.reason || "ended";
        call.open = { agent: null, customer: null };
        break;
    }
  }

  function applyTranscript(call, e) {
    const leg = e.leg;
    let line = call.open[leg];
    if (!line) {
      line = { kind: "speech", leg, text: "", final: false, start: e.start_s, end: e.end_s, marks: [] };
      call.lines.push(line);
    }
    line.text = e.text || "";
    line.start = e.start_s;
    line.end = e.end_s;
    line.final = e.type === "final";
    call.open[leg] = line.final ? null : line;
  }

  function lineForFlag(call, e) {
    if (call.open[e.leg]) return call.open[e.leg];
    for (let i = call.lines.length - 1; i >= 0; i--) {
      const line = call.lines[i];
      if (line.kind === "speech" && line.leg === e.leg && (e.start_s == null || line.start <= e.start_s + 0.5)) {
        return line;
      }
    }
    return null;
  }

  function applyFlag(call, e) {
    const severity = e.signal ? "signal" : e.severity;
    call.flags.push({ severity, category: e.category, rule: e.rule, leg: e.leg, matched: e.matched || "",
                      at: e.start_s, signal: !!e.signal });
    const line = lineForFlag(call, e);
    if (line) line.marks.push({ matched: e.matched || "", severity });
  }

  function applyAction(call, e) {
    const leg = e.leg || (e.action === "mute" || e.action === "unmute" ? "agent" : null);
    if (e.action === "mute") call.muted.add(leg);
    if (e.action === "unmute") call.muted.delete(leg);
    const entry = { action: e.action, leg, actor: e.actor, reason: e.reason, rule: e.rule };
    call.actions.push(entry);
    call.lines.push({ kind: "action", ...entry });
  }

  // --- rendering -------------------------------------------------------------------------------

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleTimeString([], { hour12: false });
  }

  function fmtSeconds(s) {
    if (s == null || isNaN(s)) return "";
    const m = Math.floor(s / 60);
    const sec = Math.floor(s % 60);
    return `${m}:${String(sec).padStart(2, "0")}`;
  }

  function worst(severities) {
    let best = -1;
    for (const s of severities) best = Math.max(best, SEVERITY_ORDER.indexOf(s));
    return best < 0 ? null : SEVERITY_ORDER[best];
  }

  function renderList() {
    const body = $("call-rows");
    body.replaceChildren();
    for (const call of calls.values()) {
      const row = el("tr", call.ended ? "ended" : "live");
      row.dataset.callId = call.id;
      if (call.id === selected) row.classList.add("selected");
      const counted = call.flags.filter((f) => !f.signal);
      const level = worst(counted.map((f) => f.severity));
      const cells = [call.id.slice(0, 8), call.adapter, call.mode, fmtTime(call.startedAt), call.agentId || "—",
                     String(counted.length), [...call.muted].join(", ") || "—", call.ended ? "ended" : "live"];
      cells.forEach((text, i) => {
        const cell = el("td", i === 5 && level ? `sev-${level}` : "", text);
        if (i === 0) cell.title = call.id;
        row.append(cell);
      });
      row.tabIndex = 0;
      row.addEventListener("click", () => select(call.id));
      row.addEventListener("keydown", (ev) => { if (ev.key === "Enter") select(call.id); });
      body.append(row);
    }
    $("no-calls").hidden = calls.size > 0;
  }

  // Text with the flagged words wrapped in <mark>, built from text nodes only.
  function markedText(text, marks) {
    const ranges = [];
    for (const m of marks) {
      if (!m.matched) continue;
      let from = 0;
      for (;;) {
        const at = text.indexOf(m.matched, from);
        if (at < 0) break;
        ranges.push([at, at + m.matched.length, m.severity]);
        from = at + m.matched.length;
      }
    }
    ranges.sort((a, b) => a[0] - b[0]);
    const span = el("span", "text");
    let pos = 0;
    for (const [start, end, severity] of ranges) {
      if (start < pos) continue;
      if (start > pos) span.append(document.createTextNode(text.slice(pos, start)));
      span.append(el("mark", `sev-${severity}`, text.slice(start, end)));
      pos = end;
    }
    if (pos < text.length) span.append(document.createTextNode(text.slice(pos)));
    return span;
  }

  function renderLine(line) {
    if (line.kind === "action") {
      const row = el("div", `line action act-${line.action}`);
      row.dataset.action = line.action;
      row.append(el("span", "who", "action"));
      row.append(el("span", "text", describeAction(line)));
      return row;
    }
    const row = el("div", `line leg-${line.leg} ${line.final ? "final" : "partial"}`);
    row.dataset.leg = line.leg;
    const level = worst(line.marks.map((m) => m.severity));
    if (level) row.classList.add("flagged", `sev-${level}`);
    row.append(el("span", "who", line.leg));
    row.append(el("span", "time", fmtSeconds(line.start)));
    row.append(markedText(line.text, line.marks));
    return row;
  }

  function describeAction(a) {
    const parts = [a.action];
    if (a.leg) parts.push(`(${a.leg})`);
    parts.push(`by ${a.actor}`);
    if (a.reason) parts.push(`— ${a.reason}`);
    return parts.join(" ");
  }

  function renderDetail() {
    const call = selected && calls.get(selected);
    $("detail").hidden = !call;
    if (!call) return;
    $("detail-id").textContent = call.id;
    $("detail-meta").textContent = [call.adapter, call.mode, fmtTime(call.startedAt),
                                     call.agentId ? `agent ${call.agentId}` : ""].filter(Boolean).join(" · ");
    const status = $("detail-status");
    status.textContent = call.ended ? `Ended: ${call.ended}` : (call.muted.size ? `Live · muted: ${[...call.muted].join(", ")}` : "Live");
    status.className = `status ${call.ended ? "ended" : "live"}`;
    for (const button of $("action-bar").querySelectorAll("button")) button.disabled = !!call.ended;

    const box = $("transcript");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.replaceChildren(...call.lines.map(renderLine));
    if (atBottom) box.scrollTop = box.scrollHeight;

    $("flags").replaceChildren(...call.flags.map((f) => {
      const item = el("li", `flag sev-${f.severity}`);
      item.dataset.category = f.category;
      item.append(el("span", "badge", f.severity), el("span", "category", f.category),
                  el("span", "leg", f.leg), el("span", "matched", f.matched), el("span", "time", fmtSeconds(f.at)));
      return item;
    }));
    $("actions").replaceChildren(...call.actions.map((a) => {
      const item = el("li", `act act-${a.action}`, describeAction(a));
      item.dataset.action = a.action;
      item.dataset.actor = a.actor || "";
      return item;
    }));
  }

  function select(id) {
    selected = id;
    $("action-result").textContent = "";
    history.replaceState(null, "", `#call=${encodeURIComponent(id)}`);
    renderList();
    renderDetail();
  }

  // --- actions ---------------------------------------------------------------------------------

  function buildButtons() {
    const bar = $("action-bar");
    if (!CAN_ACT) {
      bar.append(el("span", "muted", `Read-only (${ROLE})`));
      return;
    }
    for (const b of BUTTONS) {
      const button = el("button", b.danger ? "danger" : "", b.label);
      button.type = "button";
      button.dataset.action = b.action;
      button.addEventListener("click", () => act(b.action, b.leg));
      bar.append(button);
    }
  }

  async function act(action, leg) {
    if (!selected) return;
    const result = $("action-result");
    result.textContent = `${action}: sending…`;
    try {
      const response = await fetch(`/api/calls/${encodeURIComponent(selected)}/actions`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
        body: JSON.stringify({ action, leg }),
      });
      if (response.status === 401) { location.assign("/login"); return; }
      const body = await response.json().catch(() => ({}));
      result.textContent = response.ok ? `${action}: sent` : `${action}: ${body.error || response.statusText}`;
    } catch (err) {
      result.textContent = `${action}: network error`;
    }
  }

  // --- the event stream ------------------------------------------------------------------------

  function onSnapshot(message) {
    const live = new Set();
    for (const c of message.calls) {
      live.add(c.call_id);
      const call = newCall(c.call_id);
      calls.set(c.call_id, call);
      call.adapter = c.adapter; call.mode = c.mode; call.startedAt = c.started_at; call.agentId = c.agent_id;
      for (const e of c.events) apply(call, e);
      call.muted = new Set(c.muted);
    }
    for (const call of calls.values()) {
      if (!live.has(call.id) && !call.ended) call.ended = "ended while disconnected";
    }
  }

  function onMessage(raw) {
    let message;
    try { message = JSON.parse(raw.data); } catch (err) { return; }
    if (message.type === "snapshot") {
      onSnapshot(message);
    } else if (message.call_id) {
      apply(getCall(message.call_id), message);
      if (message.call_id !== selected) { renderList(); return; }
    }
    renderList();
    renderDetail();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/ws/events`);
    const conn = $("conn-status");
    socket.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn ok"; retryMs = 1000; });
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", (ev) => {
      conn.textContent = "disconnected"; conn.className = "conn down";
      if (ev.code === 4401) { location.assign("/login"); return; }
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    });
  }

  function start() {
    if (ROLE === "admin") $("admin-link").hidden = false;
    if (ROLE === "supervisor") $("qa-link").href = "/qa/reports";
    $("qa-link").hidden = !["qa", "admin", "supervisor"].includes(ROLE);
    buildButtons();
    const hash = new URLSearchParams(location.hash.slice(1));
    if (hash.get("call")) selected = hash.get("call");
    renderList();
    renderDetail();
    connect();
  }

  start();
})();
