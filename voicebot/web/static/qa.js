// The QA review page: a transcript line or a flag seeks the player to its time; the line being heard is marked.
// The page's text is all rendered (escaped) by the server; this script inserts none.
"use strict";

(function () {
  const player = document.getElementById("player");
  if (!player) return;
  const accept = document.getElementById("accept-auto");
  if (accept) {
    accept.addEventListener("click", () => {
      for (const row of document.querySelectorAll("tr[data-item][data-auto]")) {
        const radio = row.querySelector(`input[type=radio][value="${CSS.escape(row.dataset.auto)}"]`);
        if (radio) radio.checked = true;
      }
    });
  }
  const lines = Array.from(document.querySelectorAll("#transcript .line[data-start]"));

  function seek(startS) {
    if (!Number.isFinite(startS)) return;
    player.currentTime = startS;
    player.play().catch(() => {});
  }

  for (const node of document.querySelectorAll("#transcript .line[data-start], #flags .flag[data-start]")) {
    node.addEventListener("click", () => seek(Number(node.dataset.start)));
  }

  player.addEventListener("timeupdate", () => {
    const now = player.currentTime;
    let current = null;
    for (const line of lines) {
      if (Number(line.dataset.start) <= now) current = line;
    }
    for (const line of lines) line.classList.toggle("playing", line === current);
  });
})();
