// The jobs page's only script: refresh the live part of the page every few seconds, and
// play a contact sheet's clip on hover.
// The page works without it (reload to update); nothing here is fetched from elsewhere.
(function () {
  "use strict";
  // The contact sheet: a clip plays, muted, while the pointer (or focus) is on its tile.
  Array.prototype.forEach.call(document.querySelectorAll("video.clip"), function (video) {
    var tile = video.closest(".tile") || video;
    var play = function () { video.play().catch(function () {}); };
    var stop = function () { video.pause(); };
    tile.addEventListener("mouseenter", play);
    tile.addEventListener("focusin", play);
    tile.addEventListener("mouseleave", stop);
    tile.addEventListener("focusout", stop);
  });
  var live = document.getElementById("live");
  if (!live || !live.dataset.poll) {
    return;
  }
  var every = (parseInt(live.dataset.every, 10) || 3) * 1000;
  var busy = false;

  function apply(html) {
    var holder = document.createElement("div");
    holder.innerHTML = html;
    var first = holder.firstElementChild;
    var version = first ? first.getAttribute("data-version") : null;
    // The job page reloads when the state changes: the clip or the buttons may change too.
    if (live.dataset.version && version && version !== live.dataset.version) {
      window.location.reload();
      return;
    }
    live.innerHTML = html;
    live.classList.remove("stale");
    live.setAttribute("data-updated", String(Date.now()));
  }

  function tick() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    fetch(live.dataset.poll, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(apply)
      .catch(function () {
        live.classList.add("stale");
      })
      .finally(function () {
        busy = false;
      });
  }

  window.setInterval(tick, every);
})();
