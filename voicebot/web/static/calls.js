// A call's state in the console, built from its events: transcript lines (partials replaced by finals), flags
// with the words they marked, actions, mute state, elapsed time. No rendering here.
"use strict";

(function () {
  const SEVERITY_ORDER = ["signal", "low", "medium", "high", "critical"];

  function newCall(id) {
    return {
      id, node: "", adapter: "", mode: "", startedAt: null, agentId: null, zones: [], ended: null, warnHeardBy: "agent",
      elapsedS: 0, seenAt: Date.now(), muted: new Set(), flags: [], actions: [], lines: [],
      open: { agent: null, customer: null },
    };
  }

  // --- applying events to a call's state -------------------------------------------------------

  function apply(call, e) {
    switch (e.type) {
      case "call_start":
        Object.assign(call, { node: e.node || "", adapter: e.adapter, mode: e.mode, startedAt: e.started_at,
                              agentId: e.agent_id, zones: e.zones || [], seenAt: Date.now(), elapsedS: 0 });
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
        call.elapsedS = e.duration_s != null ? e.duration_s : elapsed(call);
        call.open = { agent: null, customer: null };
        break;
    }
  }

  function applyTranscript(call, e) {
    let line = call.open[e.leg];
    if (!line) {
      line = { kind: "speech", leg: e.leg, text: "", final: false, start: e.start_s, end: e.end_s, marks: [] };
      call.lines.push(line);
    }
    Object.assign(line, { text: e.text || "", start: e.start_s, end: e.end_s, final: e.type === "final" });
    call.open[e.leg] = line.final ? null : line;
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

  // A call as the server summarised it, with its events so far.
  function loadCall(c) {
    const call = newCall(c.call_id);
    Object.assign(call, { node: c.node || "", adapter: c.adapter, mode: c.mode, startedAt: c.started_at,
                          agentId: c.agent_id, zones: c.zones || [], warnHeardBy: c.warn_heard_by,
                          elapsedS: c.elapsed_s || 0 });
    for (const e of c.events) apply(call, e);
    call.muted = new Set(c.muted);
    call.ended = c.ended;
    call.seenAt = Date.now();
    return call;
  }

  function worst(severities) {
    let best = -1;
    for (const s of severities) best = Math.max(best, SEVERITY_ORDER.indexOf(s));
    return best < 0 ? null : SEVERITY_ORDER[best];
  }

  function elapsed(call) {
    return call.ended ? call.elapsedS : call.elapsedS + (Date.now() - call.seenAt) / 1000;
  }

  window.VB_CALLS = { SEVERITY_ORDER, newCall, apply, loadCall, worst, elapsed };
})();
