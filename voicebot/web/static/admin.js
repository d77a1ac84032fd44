// User administration for admins: add, rename, change role, reset password, disable; values go in as text only.
"use strict";

(function () {
  const ME = document.querySelector('meta[name="user"]').content;
  const { t, fmtTime, applyStatic } = window.VB_I18N;
  const ROLES = ["supervisor", "qa", "admin", "collector"];
  const { el, call } = window.VB_PAGE;
  const $ = (id) => document.getElementById(id);

  function changeForm(u) {
    const box = el("div", null, { class: "user-change" });
    const name = el("input", null, { "aria-label": `${t("display_name")} · ${u.username}`, maxlength: "40",
                                     "data-field": "display_name" });
    name.value = u.display_name || "";
    const saveName = el("button", t("save_name"), { type: "button" });
    saveName.addEventListener("click", () => change(u.username, { display_name: name.value }));
    box.append(name, saveName);
    if (u.username === ME) return box;
    const role = el("select", null, { "aria-label": `${t("role")} · ${u.username}`, "data-field": "role" });
    for (const r of ROLES) role.append(el("option", t(`role_${r}`), { value: r }));
    role.value = u.role;
    role.addEventListener("change", () => change(u.username, { role: role.value }));
    const password = el("input", null, { type: "password", minlength: "10", autocomplete: "new-password",
                                         "aria-label": `${t("new_password")} · ${u.username}`, "data-field": "password" });
    const reset = el("button", t("reset_password"), { type: "button" });
    reset.addEventListener("click", () => change(u.username, { password: password.value }));
    const toggle = el("button", u.disabled ? t("enable") : t("disable"), { type: "button", "data-field": "disabled" });
    toggle.addEventListener("click", () => change(u.username, { disabled: !u.disabled }));
    box.append(role, password, reset, toggle);
    return box;
  }

  async function load() {
    const { users } = await call("GET", "/api/users");
    $("user-rows").replaceChildren(...users.map((u) => {
      const tr = el("tr", null, { "data-username": u.username });
      const cells = [u.username, u.display_name || "—", t(`role_${u.role}`), u.disabled ? t("disabled") : t("active"),
                     fmtTime(new Date(u.created_at * 1000).toISOString())];
      for (const text of cells) tr.append(el("td", text));
      const td = el("td");
      td.append(changeForm(u));
      tr.append(td);
      return tr;
    }));
  }

  async function change(username, body) {
    try {
      await call("POST", `/api/users/${encodeURIComponent(username)}`, body);
      $("admin-result").textContent = t("updated", { who: username });
    } catch (err) {
      $("admin-result").textContent = `${username}: ${err.message}`;
    }
    await load();
  }

  $("add-user").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const body = { username: form.username.value, role: form.role.value, password: form.password.value,
                   display_name: form.display_name.value };
    try {
      await call("POST", "/api/users", body);
      $("admin-result").textContent = t("added", { who: body.username });
      form.reset();
    } catch (err) {
      $("admin-result").textContent = err.message;
    }
    await load();
  });

  applyStatic();
  load().catch((err) => { $("admin-result").textContent = err.message; });
})();
