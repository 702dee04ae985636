// The project page's "Skills and tasks" section: refetch the server-rendered partial while tasks are
// active (pending, waiting or running), every few seconds; stop when none is.
(function () {
  "use strict";
  var section = document.getElementById("tasks");
  if (!section || !section.dataset.url) return;
  var delay = 3000;
  function active() {
    var box = section.querySelector("[data-tasks-active]");
    return box && box.getAttribute("data-tasks-active") === "1";
  }
  function refresh() {
    if (document.hidden) { return schedule(); }
    fetch(section.dataset.url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) { section.innerHTML = html; delay = 3000; schedule(); })
      .catch(function () { delay = Math.min(delay * 2, 30000); schedule(); });
  }
  function schedule() { if (active()) window.setTimeout(refresh, delay); }
  schedule();
})();
