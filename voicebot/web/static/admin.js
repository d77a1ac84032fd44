// User administration for admins; every value is inserted with textContent.
"use strict";

(function () {
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const ME = document.querySelector('meta[name="user"]').content;
  const $ = (id) => document.getElementById(id);

  async function call(method, url, body) {
    const response = await fetch(url, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) { location.assign("/login"); throw new Error("signed out"); }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  async function load() {
    const { users } = await call("GET", "/api/users");
    const rows = users.map((u) => {
      const tr = document.createElement("tr");
      tr.dataset.username = u.username;
      tr.append(cell(u.username), cell(u.role), cell(u.disabled ? "disabled" : "active"),
                cell(new Date(u.created_at * 1000).toLocaleString()));
      const td = document.createElement("td");
      if (u.username !== ME) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = u.disabled ? "Enable" : "Disable";
        button.addEventListener("click", () => change(u.username, { disabled: !u.disabled }));
        td.append(button);
      }
      tr.append(td);
      return tr;
    });
    $("user-rows").replaceChildren(...rows);
  }

  async function change(username, body) {
    try {
      await call("POST", `/api/users/${encodeURIComponent(username)}`, body);
      $("admin-result").textContent = `${username}: updated`;
    } catch (err) {
      $("admin-result").textContent = `${username}: ${err.message}`;
    }
    await load();
  }

  $("add-user").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const body = { username: form.username.value, role: form.role.value, password: form.password.value };
    try {
      await call("POST", "/api/users", body);
      $("admin-result").textContent = `${body.username}: added`;
      form.reset();
    } catch (err) {
      $("admin-result").textContent = err.message;
    }
    await load();
  });

  load().catch((err) => { $("admin-result").textContent = err.message; });
})();
