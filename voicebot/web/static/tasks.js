// The task queue: collectors close or take their tasks, supervisors and admins also reassign; text goes in as text.
"use strict";

(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const ME = meta("user");
  const MANAGE = meta("manage") === "yes";
  const { t, fmtTime, applyStatic } = window.VB_I18N;
  const { el, call } = window.VB_PAGE;
  const $ = (id) => document.getElementById(id);

  function changes(task) {
    const box = el("div", null, { class: "user-change" });
    if (task.status !== "open") {
      box.append(el("span", `${task.done_by} · ${task.note || ""}`));
      return box;
    }
    const note = el("input", null, { maxlength: "500", "aria-label": `${t("note")} · ${task.account_id}`,
                                     "data-field": "note" });
    const done = el("button", t("task_done"), { type: "button", "data-action": "done" });
    done.addEventListener("click", () => change(task, { action: "done", note: note.value }));
    box.append(note, done);
    if (!task.assignee) {
      const take = el("button", t("take"), { type: "button", "data-action": "take" });
      take.addEventListener("click", () => change(task, { action: "assign", assignee: ME }));
      box.append(take);
    }
    if (MANAGE) {
      const who = el("input", null, { maxlength: "32", "aria-label": `${t("assignee")} · ${task.account_id}`,
                                      "data-field": "assignee" });
      const assign = el("button", t("assign"), { type: "button", "data-action": "assign" });
      assign.addEventListener("click", () => change(task, { action: "assign", assignee: who.value || null }));
      box.append(who, assign);
    }
    return box;
  }

  async function load() {
    const status = $("show-done").checked ? "done" : "open";
    const { tasks } = await call("GET", `/api/tasks?status=${status}`);
    $("task-rows").replaceChildren(...tasks.map((task) => {
      const tr = el("tr", null, { "data-task-id": task.task_id, "data-kind": task.kind });
      for (const text of [t(`kind_${task.kind}`) || task.kind, `${task.campaign} · ${task.account_id}`,
                          fmtTime(task.due_at), task.assignee || t("unassigned"), t(task.status === "done" ? "task_done_status" : "task_open")]) {
        tr.append(el("td", text));
      }
      const td = el("td");
      td.append(changes(task));
      tr.append(td);
      return tr;
    }));
    $("no-tasks").hidden = tasks.length > 0;
  }

  async function change(task, body) {
    try {
      await call("POST", `/api/tasks/${encodeURIComponent(task.task_id)}`, body);
      $("task-result").textContent = t("updated", { who: task.account_id });
    } catch (err) {
      $("task-result").textContent = `${task.account_id}: ${err.message}`;
    }
    await load();
  }

  applyStatic();
  $("show-done").addEventListener("change", () => load().catch((err) => { $("task-result").textContent = err.message; }));
  load().catch((err) => { $("task-result").textContent = err.message; });
})();
