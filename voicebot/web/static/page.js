// What the admin and task pages share: elements built with text only, and JSON calls that carry the CSRF token.
"use strict";

(function () {
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

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

  window.VB_PAGE = { el, call };
})();
