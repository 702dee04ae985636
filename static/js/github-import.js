/* The "Import from GitHub" dialog: installations → repositories (every page GitHub has, with search) →
   POST /api/v1/projects/import → the new project's page. Plain DOM, no framework, no inline script. */
(function () {
  "use strict";
  var dialog = document.getElementById("github-dialog");
  if (!dialog) return;
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var form = dialog.querySelector("[data-role=github-form]");
  var el = function (role) { return dialog.querySelector("[data-role=" + role + "]"); };
  var select = dialog.querySelector("#gh-installation");
  var search = dialog.querySelector("#gh-search");
  var branch = dialog.querySelector("#gh-branch");
  var name = dialog.querySelector("#gh-name");
  var submit = el("github-submit");
  var state = { page: 1, pages: 1, loaded: false, timer: null, seq: 0 };

  function show(role, on) { el(role).hidden = !on; }
  function error(message) {
    var box = el("github-error");
    box.textContent = message || "";
    box.hidden = !message;
  }
  function api(url, options) {
    options = options || {};
    options.credentials = "same-origin";
    options.headers = Object.assign({ "Accept": "application/json", "X-CSRFToken": csrf }, options.headers || {});
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          var err = new Error(body.message || "The request failed (HTTP " + response.status + ").");
          err.body = body;
          throw err;
        }
        return body;
      });
    });
  }
  function text(tag, cls, value) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    node.textContent = value;
    return node;
  }

  function load() {
    if (state.loaded) return;
    state.loaded = true;
    error("");
    api(dialog.dataset.installationsUrl).then(function (data) {
      show("github-loading", false);
      if (!data.configured) {
        error("GitHub is not configured on this server: ask an operator to set up the GitHub App.");
        return;
      }
      var usable = data.results.filter(function (i) { return i.usable; });
      if (!data.results.length) { show("github-connect", true); return; }
      select.textContent = "";
      data.results.forEach(function (inst) {
        var option = text("option", "", inst.account_login + (inst.usable ? "" : " (" + inst.status.toLowerCase() + ")"));
        option.value = inst.id;
        option.disabled = !inst.usable;
        option.title = inst.status_reason || "";
        select.appendChild(option);
      });
      show("github-picker", true);
      if (!usable.length) {
        error(data.results[0].status_reason || "No usable installation: connect GitHub again.");
        return;
      }
      select.value = usable[0].id;
      repositories(1);
    }).catch(function (err) {
      show("github-loading", false);
      state.loaded = false;
      error(err.message);
    });
  }

  function repositories(page) {
    var seq = ++state.seq;
    var list = el("repo-list");
    list.textContent = "";
    list.appendChild(text("li", "repo-empty", "Loading repositories…"));
    submit.disabled = true;
    var url = "/api/v1/github/installations/" + encodeURIComponent(select.value) + "/repositories?page=" + page;
    if (search.value.trim()) url += "&search=" + encodeURIComponent(search.value.trim());
    api(url).then(function (data) {
      if (seq !== state.seq) return;
      state.page = data.page; state.pages = data.pages;
      list.textContent = "";
      if (!data.results.length) {
        list.appendChild(text("li", "repo-empty", search.value ? "No repository matches." : "The installation has no repositories."));
      }
      data.results.forEach(function (repo) {
        var li = document.createElement("li");
        var label = document.createElement("label");
        var radio = document.createElement("input");
        radio.type = "radio"; radio.name = "repository"; radio.value = repo.full_name;
        radio.dataset.branch = repo.default_branch; radio.dataset.name = repo.name;
        label.appendChild(radio);
        label.appendChild(text("span", "repo-name", repo.full_name));
        if (repo.private) label.appendChild(text("span", "badge-private", "Private"));
        label.appendChild(text("span", "repo-meta", repo.default_branch ? "default: " + repo.default_branch : "empty"));
        li.appendChild(label);
        list.appendChild(li);
      });
      show("repo-pages", data.pages > 1);
      el("repo-page").textContent = "Page " + data.page + " of " + data.pages + " · " + data.count + " repositories";
      el("repo-prev").disabled = data.page <= 1;
      el("repo-next").disabled = data.page >= data.pages;
    }).catch(function (err) {
      if (seq !== state.seq) return;
      list.textContent = "";
      error(err.message);
    });
  }

  dialog.addEventListener("change", function (event) {
    if (event.target.name === "repository") {
      branch.placeholder = event.target.dataset.branch || "";
      branch.value = "";
      name.value = event.target.dataset.name.replace(/[^A-Za-z0-9 -]+/g, "-").replace(/^[^A-Za-z]+/, "");
      submit.disabled = false;
    } else if (event.target === select) {
      repositories(1);
    }
  });
  search.addEventListener("input", function () {
    clearTimeout(state.timer);
    state.timer = setTimeout(function () { repositories(1); }, 250);
  });
  search.addEventListener("keydown", function (event) { if (event.key === "Enter") event.preventDefault(); });
  el("repo-prev").addEventListener("click", function () { repositories(state.page - 1); });
  el("repo-next").addEventListener("click", function () { repositories(state.page + 1); });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var chosen = dialog.querySelector("input[name=repository]:checked");
    if (!chosen) return;
    var body = { installation_id: Number(select.value), repository: chosen.value };
    if (branch.value.trim()) body.branch = branch.value.trim();
    if (name.value.trim()) body.name = name.value.trim();
    submit.disabled = true;
    submit.textContent = "Importing…";
    error("");
    api(dialog.dataset.importUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (project) {
      window.location.href = "/projects/" + project.id + "/";
    }).catch(function (err) {
      error(err.message);
      submit.disabled = false;
      submit.textContent = "Import";
    });
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest('[data-open-dialog="github-dialog"]')) load();
  });
  if (dialog.open || dialog.hasAttribute("data-open-on-load")) {
    if (!dialog.open && dialog.showModal) dialog.showModal();
    load();
  }
})();
