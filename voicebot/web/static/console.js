// The supervisor console: alerts across calls, today's calls, a call's transcript, flags and actions.
// Everything heard on a call is inserted with textContent, never as HTML.
"use strict";

(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const ROLE = meta("role");
  const CAN_ACT = meta("can-act") === "yes";
  const { t, fmtTime, fmtClock, fmtSeconds, applyStatic } = window.VB_I18N;
  const { SEVERITY_ORDER, newCall, apply, loadCall, worst, elapsed } = window.VB_CALLS;
  const { call: request } = window.VB_PAGE;
  const ALERT_SOUND_MS = 180;
  const COLUMNS = ["col_call", "col_agent", "col_started", "col_elapsed", "col_debtor_time", "col_flags", "col_status"];

  const calls = new Map();
  const alerts = new Map();
  let pack = { categories: {}, rules: {}, fallback_zones: [] };
  let selected = null;
  let confirmingHangup = false;
  const pending = new Set();
  let audio = null;
  let retryMs = 1000;

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function getCall(id) {
    if (!calls.has(id)) calls.set(id, newCall(id));
    return calls.get(id);
  }

  // --- what things are called ------------------------------------------------------------------

  const categoryLabel = (category) => pack.categories[category] || category;
  const ruleLabel = (rule) => pack.rules[rule] || rule;

  function flagLabel(f) {
    return f.signal || f.category === "signal" ? ruleLabel(f.rule) : categoryLabel(f.category);
  }

  function debtorTime(call) {
    const zones = call.zones.length ? call.zones : pack.fallback_zones;
    if (!call.startedAt) return "";
    const at = new Date(new Date(call.startedAt).getTime() + elapsed(call) * 1000);
    return zones.map((zone) => `${fmtClock(at, zone)} ${zone.split("/").pop().replace(/_/g, " ")}`).join(" · ");
  }

  function warnLabel(call) {
    return call.warnHeardBy ? t(`warn_${call.warnHeardBy}`) : t("warn_none");
  }

  function describeAction(a) {
    const parts = [t(`act_${a.action}`) || a.action];
    if (a.leg) parts.push(`(${t(a.leg)})`);
    parts.push(t("by", { who: a.actor }));
    if (a.reason) parts.push(`— ${a.reason}`);
    return parts.join(" ");
  }

  // --- the alerts list -------------------------------------------------------------------------

  function renderAlerts() {
    const list = [...alerts.values()].sort((a, b) => b.id - a.id);
    const open = list.filter((a) => !a.acked_by).length;
    $("alert-count").textContent = open ? t("unacked", { n: open }) : "";
    document.title = (open ? `(${open}) ` : "") + t("title");
    keepFocus(() => $("alerts").replaceChildren(...list.map(alertItem)));
    $("no-alerts").hidden = list.length > 0;
  }

  function alertItem(a) {
    const item = el("li", `alert sev-${a.severity}${a.acked_by ? " acked" : ""}`);
    item.dataset.alertId = a.id;
    item.dataset.kind = a.kind;
    const call = calls.get(a.call_id);
    const label = a.kind === "fail_safe" || a.kind === "out_of_hours" ? t(`kind_${a.kind}`)
      : a.kind === "signal" ? ruleLabel(a.rule) : categoryLabel(a.category);
    item.append(el("span", "badge", t(`sev_${a.severity}`)), el("span", "label", label));
    if (a.words) item.append(el("q", "words", a.words));
    const open = el("button", "link", `${t("call")} ${a.call_id.slice(0, 8)}`);
    open.type = "button";
    open.dataset.focusKey = `open-${a.id}`;
    open.addEventListener("click", () => select(a.call_id));
    item.append(open, el("span", "agent", (a.agent_id || (call && call.agentId)) || "—"),
                el("time", "time", fmtTime(a.at)));
    if (a.acked_by) {
      item.append(el("span", "acked-by", t("acked_by", { who: a.acked_by })));
    } else if (CAN_ACT) {
      const ack = el("button", "ack", t("ack"));
      ack.type = "button";
      ack.dataset.focusKey = `ack-${a.id}`;
      ack.setAttribute("aria-disabled", pending.has(`ack-${a.id}`) ? "true" : "false");
      ack.addEventListener("click", () => acknowledge(a.id));
      item.append(ack);
    }
    return item;
  }

  function beep() {
    if (!audio || audio.state !== "running") return;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    gain.gain.value = 0.08;
    osc.frequency.value = 880;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + ALERT_SOUND_MS / 1000);
  }

  // --- the call list ---------------------------------------------------------------------------

  // Live calls first, each group by its worst flag, then newest first.
  function callOrder(a, b) {
    if (!a.ended !== !b.ended) return a.ended ? 1 : -1;
    const wa = SEVERITY_ORDER.indexOf(worst(a.flags.filter((f) => !f.signal).map((f) => f.severity)));
    const wb = SEVERITY_ORDER.indexOf(worst(b.flags.filter((f) => !f.signal).map((f) => f.severity)));
    if (wa !== wb) return wb - wa;
    return String(b.startedAt).localeCompare(String(a.startedAt));
  }

  // Rows are kept per call and updated in place, so a click or a focused row survives live updates.
  const rows = new Map();

  function renderList() {
    const order = [...calls.values()].sort(callOrder);
    const body = $("call-rows");
    for (const call of order) fillRow(rows.get(call.id) || newRow(call), call);
    const same = order.length === body.children.length && order.every((c, i) => body.children[i] === rows.get(c.id));
    if (!same) keepFocus(() => body.replaceChildren(...order.map((c) => rows.get(c.id))));
    $("no-calls").hidden = calls.size > 0;
  }

  function newRow(call) {
    const row = el("tr");
    row.dataset.callId = call.id;
    row.dataset.focusKey = `row-${call.id}`;
    row.tabIndex = 0;
    for (const key of COLUMNS) {
      const cell = el("td", key);
      cell.dataset.label = t(key);
      row.append(cell);
    }
    row.cells[0].title = call.id;
    row.addEventListener("click", () => select(call.id));
    row.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(call.id); }
    });
    rows.set(call.id, row);
    return row;
  }

  function fillRow(row, call) {
    row.className = `${call.ended ? "ended" : "live"}${call.id === selected ? " selected" : ""}`;
    row.setAttribute("aria-selected", call.id === selected ? "true" : "false");
    const counted = call.flags.filter((f) => !f.signal);
    const level = worst(counted.map((f) => f.severity));
    const status = call.ended ? `${t("ended")}: ${call.ended}` : (call.muted.size ? t("live_muted") : t("live"));
    const texts = [call.id.slice(0, 8), call.agentId || "—", fmtTime(call.startedAt, true), fmtSeconds(elapsed(call)),
                   call.ended ? "" : debtorTime(call),
                   level ? `${counted.length} · ${t(`sev_${level}`)}` : String(counted.length), status];
    texts.forEach((text, i) => { if (row.cells[i].textContent !== text) row.cells[i].textContent = text; });
    row.cells[5].className = level ? `col_flags sev-${level}` : "col_flags";
  }

  // Re-render without losing keyboard focus: the element with the same focus key gets it back.
  function keepFocus(render) {
    const key = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.focusKey : null;
    render();
    if (!key) return;
    const again = document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again && again !== document.activeElement) again.focus({ preventScroll: true });
  }

  // --- one call --------------------------------------------------------------------------------

  // Text with the flagged words wrapped in <mark>, built from text nodes only.
  function markedText(text, marks) {
    const ranges = [];
    for (const m of marks) {
      if (!m.matched) continue;
      for (let at = text.indexOf(m.matched); at >= 0; at = text.indexOf(m.matched, at + m.matched.length)) {
        ranges.push([at, at + m.matched.length, m.severity]);
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
      row.append(el("span", "who", t("action")), el("span", "text", describeAction(line)));
      return row;
    }
    const row = el("div", `line leg-${line.leg} ${line.final ? "final" : "partial"}`);
    row.dataset.leg = line.leg;
    const level = worst(line.marks.map((m) => m.severity));
    if (level) row.classList.add("flagged", `sev-${level}`);
    row.append(el("span", "who", t(line.leg)), el("span", "time", fmtSeconds(line.start)),
               markedText(line.text, line.marks));
    return row;
  }

  function flagItem(f) {
    const item = el("li", `flag sev-${f.severity}`);
    item.dataset.category = f.category;
    item.dataset.rule = f.rule;
    item.append(el("span", "badge", t(`sev_${f.severity}`)), el("span", "category", flagLabel(f)),
                el("span", "leg", t(f.leg)), el("span", "matched", f.matched), el("span", "time", fmtSeconds(f.at)));
    if (!f.signal && pack.rules[f.rule]) item.title = pack.rules[f.rule];
    return item;
  }

  function renderDetail() {
    const call = selected && calls.get(selected);
    $("detail").hidden = !call;
    if (!call) return;
    $("detail-id").textContent = call.id;
    $("detail-meta").textContent = [`${call.adapter} · ${call.mode}`, call.node, fmtTime(call.startedAt),
      call.agentId ? t("agent_is", { id: call.agentId }) : "", call.ended ? "" : debtorTime(call)]
      .filter(Boolean).join(" · ");
    const status = $("detail-status");
    status.textContent = call.ended ? `${t("ended")}: ${call.ended}`
      : (call.muted.size ? `${t("live")} · ${t("muted_legs", { legs: [...call.muted].map(t).join(", ") })}`
        : t("live"));
    status.className = `status ${call.ended ? "ended" : "live"}`;
    renderButtons(call);
    const box = $("transcript");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.replaceChildren(...call.lines.map(renderLine));
    if (atBottom) box.scrollTop = box.scrollHeight;
    $("flags").replaceChildren(...call.flags.map(flagItem));
    $("actions").replaceChildren(...call.actions.map((a) => {
      const item = el("li", `act act-${a.action}`, describeAction(a));
      item.dataset.action = a.action;
      item.dataset.actor = a.actor || "";
      return item;
    }));
  }

  function select(id) {
    if (id !== selected) confirmingHangup = false;
    selected = id;
    $("action-result").textContent = "";
    history.replaceState(null, "", `#call=${encodeURIComponent(id)}`);
    renderList();
    renderDetail();
  }

  // --- actions ---------------------------------------------------------------------------------

  function button(label, key, onClick, className) {
    const b = el("button", className || "", label);
    b.type = "button";
    b.dataset.action = key;
    b.dataset.focusKey = `action-${key}`;
    b.setAttribute("aria-disabled", pending.has(`action-${selected}`) ? "true" : "false");  // keeps focus
    b.addEventListener("click", onClick);
    return b;
  }

  function renderButtons(call) {
    const bar = $("action-bar");
    if (!CAN_ACT) {
      if (!bar.childElementCount) bar.append(el("span", "muted", t("read_only", { role: ROLE })));
      return;
    }
    const muted = call.muted.has("agent");
    const buttons = [
      button(warnLabel(call), "warn", () => act("warn", "agent")),
      button(muted ? t("unmute_agent") : t("mute_agent"), muted ? "unmute" : "mute",
             () => act(muted ? "unmute" : "mute", "agent")),
    ];
    buttons[1].setAttribute("aria-pressed", muted ? "true" : "false");
    buttons[1].dataset.focusKey = "action-mute";
    if (confirmingHangup) {
      buttons.push(button(t("confirm_hangup"), "confirm-hangup", () => { confirmingHangup = false; act("hangup", null); },
                          "danger"),
                   button(t("cancel"), "cancel-hangup", () => { confirmingHangup = false; renderDetail(); }));
    } else {
      buttons.push(button(t("hangup"), "hangup", () => { confirmingHangup = true; renderDetail(); }, "danger"));
    }
    if (call.ended) for (const b of buttons) b.disabled = true;
    const shape = buttons.map((b) => `${b.dataset.action}:${b.textContent}:${b.disabled}:${b.ariaDisabled}`).join("|");
    if (bar.dataset.shape === shape) return;
    bar.dataset.shape = shape;
    keepFocus(() => bar.replaceChildren(...buttons));
    if (confirmingHangup && !bar.contains(document.activeElement)) bar.querySelector("[data-action=confirm-hangup]").focus();
  }

  async function act(action, leg) {
    const id = selected;
    if (!id || pending.has(`action-${id}`)) return;
    const result = $("action-result");
    pending.add(`action-${id}`);
    renderDetail();
    result.textContent = t("sending", { action: t(`act_${action}`) });
    try {
      await request("POST", `/api/calls/${encodeURIComponent(id)}/actions`, { action, leg });
      result.textContent = t("sent", { action: t(`act_${action}`) });
    } catch (err) {
      result.textContent = err instanceof TypeError ? t("network_error") : `${t(`act_${action}`)}: ${err.message}`;
    } finally {
      pending.delete(`action-${id}`);
      renderDetail();
    }
  }

  async function acknowledge(alertId) {
    const key = `ack-${alertId}`;
    if (pending.has(key)) return;
    pending.add(key);
    renderAlerts();
    try {
      await request("POST", `/api/alerts/${alertId}/ack`, {});
    } catch (err) {
      $("action-result").textContent = err instanceof TypeError ? t("network_error") : err.message;
    } finally {
      pending.delete(key);
      renderAlerts();
    }
  }

  // --- the event stream ------------------------------------------------------------------------

  function onSnapshot(message) {
    const known = new Set();
    for (const c of message.calls) { known.add(c.call_id); calls.set(c.call_id, loadCall(c)); }
    for (const call of calls.values()) {
      if (!known.has(call.id) && !call.ended) call.ended = t("ended_while_away");
    }
    alerts.clear();
    for (const a of message.alerts) alerts.set(a.id, a);
  }

  function onMessage(raw) {
    let message;
    try { message = JSON.parse(raw.data); } catch (err) { return; }
    if (message.type === "snapshot") {
      onSnapshot(message);
    } else if (message.type === "alert") {
      alerts.set(message.id, message);
      if (message.severity === "critical" || message.kind === "signal") beep();
      renderAlerts();
      return;
    } else if (message.type === "alert_ack") {
      const a = alerts.get(message.id);
      if (a) Object.assign(a, { acked_by: message.acked_by, acked_at: message.acked_at });
      renderAlerts();
      return;
    } else if (message.call_id) {
      apply(getCall(message.call_id), message);
      renderList();
      if (message.call_id === selected) renderDetail();
      return;
    }
    renderAlerts();
    renderList();
    renderDetail();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws/events`);
    const conn = $("conn-status");
    socket.addEventListener("open", () => { conn.textContent = t("conn_live"); conn.className = "conn ok"; retryMs = 1000; });
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", (ev) => {
      conn.textContent = t("conn_down"); conn.className = "conn down";
      if (ev.code === 4401) { location.assign("/login"); return; }
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    });
  }

  function fromHash() {
    const id = new URLSearchParams(location.hash.slice(1)).get("call");
    if (id && id !== selected) select(id);
  }

  async function start() {
    applyStatic();
    $("conn-status").textContent = t("conn_connecting");
    if (ROLE === "admin") $("admin-link").hidden = false;
    if (ROLE === "supervisor") $("qa-link").href = "/qa/reports";
    $("qa-link").hidden = !["qa", "admin", "supervisor"].includes(ROLE);
    $("tasks-link").hidden = !["collector", "supervisor", "admin"].includes(ROLE);
    $("collection-link").hidden = !["supervisor", "admin"].includes(ROLE);
    const unlock = () => {
      audio = audio || new AudioContext();
      audio.resume();
    };
    document.addEventListener("pointerdown", unlock, { once: true });
    document.addEventListener("keydown", unlock, { once: true });
    try {
      const response = await fetch("/api/pack", { credentials: "same-origin" });
      if (response.ok) pack = await response.json();
    } catch (err) { /* labels fall back to ids */ }
    selected = new URLSearchParams(location.hash.slice(1)).get("call");
    window.addEventListener("hashchange", fromHash);
    setInterval(renderList, 1000);
    renderAlerts();
    renderList();
    renderDetail();
    connect();
  }

  start();
})();
