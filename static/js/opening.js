/* Start on open: the progress page polls its own address (JSON) while the sandbox starts, then loads
   the address itself, which the server redirects to the terminal, files or app once it is RUNNING. */
(function () {
  "use strict";
  var root = document.getElementById("opening");
  if (!root || !root.hasAttribute("data-waits")) return;
  var url = root.getAttribute("data-poll-url");
  var delay = 1000;

  function show(state) {
    var title = root.querySelector("[data-role=title]");
    var message = root.querySelector("[data-role=message]");
    if (title) title.textContent = state.title;
    if (message) message.textContent = state.message || "Waiting for the cluster…";
    var steps = root.querySelectorAll("[data-step]");
    for (var i = 0; i < steps.length; i++) {
      var n = Number(steps[i].getAttribute("data-step"));
      steps[i].className = n < state.step ? "done" : n === state.step ? "current" : "";
    }
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (state) {
        if (state.ready) { window.location.replace(url); return; }
        show(state);
        if (!state.waits) { window.location.reload(); return; } // stopped or failed: the page says why
        delay = Math.min(delay * 1.3, 5000);
        setTimeout(poll, delay);
      })
      .catch(function () { delay = Math.min(delay * 2, 10000); setTimeout(poll, delay); });
  }
  setTimeout(poll, delay);
})();
