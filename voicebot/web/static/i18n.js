// The console's words in English and Simplified Chinese, and times in the user's zone.
// The page's <html lang> (the user's choice, else the browser's) picks the language; <meta name="zone"> the zone.
"use strict";

(function () {
  const STRINGS = {
    en: {
      title: "Live calls · voicebot console", console: "voicebot console", qa: "QA", users: "Users",
      alerts: "Alerts", no_alerts: "No alerts today.", unacked: "{n} to acknowledge", calls: "Calls",
      no_calls: "No calls today.", call: "Call", col_call: "Call", col_agent: "Agent", col_line: "Line",
      col_started: "Started", col_elapsed: "Elapsed", col_debtor_time: "Debtor's time", col_flags: "Flags",
      col_status: "Status", flags: "Flags", actions: "Actions", transcript: "Transcript", action: "action",
      agent: "agent", customer: "customer", live: "Live", live_muted: "Live · muted", ended: "Ended",
      ended_while_away: "ended while disconnected", muted_legs: "muted: {legs}", agent_is: "agent {id}",
      by: "by {who}", ack: "Acknowledge", acked_by: "acknowledged by {who}",
      sev_critical: "critical", sev_high: "high", sev_medium: "medium", sev_low: "low", sev_signal: "signal",
      sev_info: "info", kind_fail_safe: "Fail-safe: the call could not be supervised",
      kind_out_of_hours: "Outside permitted calling hours",
      warn_agent: "Warn (agent hears a beep)", warn_customer: "Warn (the customer hears the beep)",
      warn_none: "Warn (shown here only)", mute_agent: "Mute agent", unmute_agent: "Unmute agent",
      hangup: "Hang up…", confirm_hangup: "Confirm hang-up", cancel: "Cancel",
      act_warn: "warn", act_mute: "mute", act_unmute: "unmute", act_hangup: "hang-up", act_alert: "alert",
      act_error: "error", sending: "{action}: sending…", sent: "{action}: sent", network_error: "network error",
      read_only: "Read-only ({role})", conn_connecting: "connecting…", conn_live: "live",
      conn_down: "disconnected",
      users_title: "voicebot console · users", live_calls: "Live calls", user: "User", display_name: "Display name",
      role: "Role", status: "Status", created: "Created", change: "Change", add_user: "Add a user",
      name_rule: "User names: 1–32 of a–z 0–9 . _ -, starting with a letter or digit (capitals become lower case). "
        + "A display name may be anything, Chinese included.",
      user_name: "User name", role_supervisor: "supervisor", role_qa: "QA", role_admin: "admin",
      role_collector: "collector",
      password_rule: "Password (10 characters or more)", add_user_button: "Add user", save_name: "Save name",
      new_password: "New password", reset_password: "Reset password", enable: "Enable", disable: "Disable",
      disabled: "disabled", active: "active", updated: "{who}: updated", added: "{who}: added",
      tasks_title: "voicebot console · tasks", tasks: "Tasks", task_kind: "Task", task_account: "Account",
      tasks_help: "What calls handed to people. Close a task with a note (no personal data).",
      due: "Due", assignee: "Assignee", task_status: "Status", show_done: "Show done tasks", no_tasks: "No tasks.",
      note: "Note", task_done: "Done", take: "Take", assign: "Assign", unassigned: "unassigned",
      task_open: "open", task_done_status: "done", kind_hardship: "Hardship", kind_complaint: "Complaint",
      kind_dispute_review: "Dispute to review", kind_transfer: "Transfer to a person",
      kind_broken_promise: "Broken promise (late stage)", collection: "Collection",
    },
    zh: {
      title: "实时通话 · 语音机器人控制台", console: "语音机器人控制台", qa: "质检", users: "用户",
      alerts: "告警", no_alerts: "今天没有告警。", unacked: "{n} 条待确认", calls: "通话",
      no_calls: "今天没有通话。", call: "通话", col_call: "通话", col_agent: "坐席", col_line: "线路",
      col_started: "开始", col_elapsed: "时长", col_debtor_time: "债务人当地时间", col_flags: "违规",
      col_status: "状态", flags: "违规与信号", actions: "操作", transcript: "转写", action: "操作",
      agent: "坐席", customer: "客户", live: "通话中", live_muted: "通话中 · 已静音", ended: "已结束",
      ended_while_away: "断线期间结束", muted_legs: "已静音：{legs}", agent_is: "坐席 {id}",
      by: "由 {who}", ack: "确认", acked_by: "{who} 已确认",
      sev_critical: "严重", sev_high: "高", sev_medium: "中", sev_low: "低", sev_signal: "信号", sev_info: "提示",
      kind_fail_safe: "故障保护：通话无法被监管", kind_out_of_hours: "超出允许的通话时段",
      warn_agent: "警告（坐席听到提示音）", warn_customer: "警告（客户会听到提示音）", warn_none: "警告（仅在此显示）",
      mute_agent: "静音坐席", unmute_agent: "取消静音", hangup: "挂断…", confirm_hangup: "确认挂断", cancel: "取消",
      act_warn: "警告", act_mute: "静音", act_unmute: "取消静音", act_hangup: "挂断", act_alert: "提醒",
      act_error: "错误", sending: "{action}：发送中…", sent: "{action}：已发送", network_error: "网络错误",
      read_only: "只读（{role}）", conn_connecting: "连接中…", conn_live: "实时", conn_down: "已断开",
      users_title: "语音机器人控制台 · 用户", live_calls: "实时通话", user: "用户", display_name: "显示名称",
      role: "角色", status: "状态", created: "创建时间", change: "修改", add_user: "添加用户",
      name_rule: "用户名：1–32 个 a–z 0–9 . _ - 字符，以字母或数字开头（大写会转为小写）。显示名称不限，可以用中文。",
      user_name: "用户名", role_supervisor: "主管", role_qa: "质检", role_admin: "管理员",
      role_collector: "催收员",
      password_rule: "密码（至少 10 个字符）", add_user_button: "添加用户", save_name: "保存名称",
      new_password: "新密码", reset_password: "重置密码", enable: "启用", disable: "停用",
      disabled: "已停用", active: "正常", updated: "{who}：已更新", added: "{who}：已添加",
      tasks_title: "语音机器人控制台 · 任务", tasks: "任务", task_kind: "任务", task_account: "账户",
      tasks_help: "通话转交给人工的事项。关闭任务时写一句备注（不要写个人信息）。",
      due: "截止", assignee: "负责人", task_status: "状态", show_done: "显示已完成的任务", no_tasks: "没有任务。",
      note: "备注", task_done: "完成", take: "认领", assign: "分配", unassigned: "未分配",
      task_open: "待处理", task_done_status: "已完成", kind_hardship: "经济困难", kind_complaint: "投诉",
      kind_dispute_review: "异议待核实", kind_transfer: "转人工", kind_broken_promise: "违约（后期）",
      collection: "催收分析",
    },
  };
  const LANG = document.documentElement.lang.startsWith("zh") ? "zh" : "en";
  const zoneMeta = document.querySelector('meta[name="zone"]');
  const ZONE = (zoneMeta && zoneMeta.content) || undefined;
  const LOCALE = LANG === "zh" ? "zh-CN" : "en-GB";

  function t(key, vars) {
    const text = STRINGS[LANG][key] || STRINGS.en[key] || "";
    return vars ? text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? "")) : text;
  }

  // A time in the user's zone; with `short`, the hour alone when it is today.
  function fmtTime(iso, short) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    const day = (date) => date.toLocaleDateString(LOCALE, { timeZone: ZONE });
    const clock = { timeZone: ZONE, hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" };
    if (short && day(d) === day(new Date())) return d.toLocaleTimeString(LOCALE, clock);
    return d.toLocaleString(LOCALE, { ...clock, month: "2-digit", day: "2-digit" });
  }

  function fmtClock(date, zone) {
    return date.toLocaleTimeString(LOCALE, { timeZone: zone, hour12: false, hour: "2-digit", minute: "2-digit" });
  }

  function fmtSeconds(s) {
    if (s == null || isNaN(s)) return "";
    const m = Math.floor(s / 60);
    return `${m}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  }

  // Elements marked data-t="key" get the key's words.
  function applyStatic() {
    for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  }

  window.VB_I18N = { LANG, t, fmtTime, fmtClock, fmtSeconds, applyStatic };
})();
