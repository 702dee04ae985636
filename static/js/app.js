/* Tenter dashboard: small progressive enhancements. Every form also works without JavaScript. */
(function () {
  "use strict";

  var TRANSITIONAL = ["CREATING", "STARTING", "UPDATING", "STOPPING", "TERMINATING"];
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function title(s) { return s ? s.charAt(0) + s.slice(1).toLowerCase() : ""; }

  function toast(text) {
    var el = $("#toast");
    if (!el) return;
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { el.hidden = true; }, 2600);
  }

  function request(url, options) {
    options = options || {};
    var headers = { "Accept": "application/json", "X-CSRFToken": csrf };
    return fetch(url, {
      method: options.method || "GET",
      body: options.body,
      headers: headers,
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("application/json") === -1) {
        // Signed out (redirected to the login page) or a server error page.
        if (response.redirected || response.status === 200) { window.location.reload(); }
        throw new Error("Unexpected response (" + response.status + ")");
      }
      return response.json().then(function (data) { return { ok: response.ok, status: response.status, data: data }; });
    });
  }

  function post(url) { return request(url, { method: "POST" }); }

  /* A poller that backs off when the tab is hidden and stops when nothing is transitional. */
  function Poller(tick, interval) {
    this.tick = tick;
    this.interval = interval || 1500;
    this.timer = null;
    this.running = false;
    var self = this;
    document.addEventListener("visibilitychange", function () {
      if (self.running && document.visibilityState === "visible") { self.schedule(0); }
    });
  }
  Poller.prototype.start = function () { if (!this.running) { this.running = true; this.schedule(0); } };
  Poller.prototype.stop = function () { this.running = false; clearTimeout(this.timer); };
  Poller.prototype.schedule = function (delay) {
    var self = this;
    clearTimeout(this.timer);
    if (delay === undefined) {
      delay = document.visibilityState === "hidden" ? Math.max(this.interval * 10, 15000) : this.interval;
    }
    this.timer = setTimeout(function () {
      if (!self.running) return;
      Promise.resolve(self.tick()).then(function (keepGoing) {
        if (keepGoing === false) { self.stop(); } else { self.schedule(); }
      }, function () { self.schedule(self.interval * 4); });
    }, delay);
  };

  /* ---------- Generic behaviour ---------- */

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-dismiss]");
    if (target) { target.parentElement.remove(); return; }

    target = event.target.closest("[data-open-dialog]");
    if (target && !target.disabled) {
      var dialog = document.getElementById(target.getAttribute("data-open-dialog"));
      if (dialog && dialog.showModal) {
        dialog.showModal();
        var first = dialog.querySelector("input:not([type=hidden]), textarea");
        if (first) first.focus();
      }
      return;
    }
    target = event.target.closest("[data-close-dialog]");
    if (target) { target.closest("dialog").close(); return; }

    target = event.target.closest("[data-copy]");
    if (target) { copy(target.getAttribute("data-copy")); return; }

    target = event.target.closest("[data-copy-from]");
    if (target) {
      var field = target.getAttribute("data-copy-field");
      post(target.getAttribute("data-copy-from")).then(function (r) {
        if (!r.ok) { toast(r.data.message || "Not available."); return; }
        copy(r.data[field]);
      }).catch(function () { toast("Could not copy."); });
      return;
    }

    target = event.target.closest("[data-reveal-env]");
    if (target) { revealEnv(target); return; }

    target = event.target.closest("[data-reveal-db]");
    if (target) { revealDatabase(target); return; }

    target = event.target.closest("[data-reveal-creds]");
    if (target) { revealCredentials(target); return; }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); return; }
    var kind = form.getAttribute("data-json-form");
    if (kind && window.fetch && window.FormData) {
      event.preventDefault();
      submitJson(form, kind);
    }
  });

  function copy(text) {
    if (!text) return;
    var done = function () { toast("Copied to clipboard"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else { fallbackCopy(text); done(); }
  }
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* ignore */ }
    area.remove();
  }

  /* Reveal buttons toggle: the value is fetched from an owner-only, audited endpoint each time. */
  function toggleSecret(button, code, load) {
    if (button.getAttribute("data-revealed") === "1") {
      code.textContent = button.getAttribute("data-masked");
      button.setAttribute("data-revealed", "0");
      button.textContent = "Reveal";
      return;
    }
    button.disabled = true;
    load().then(function (value) {
      button.setAttribute("data-masked", code.textContent);
      code.textContent = value;
      button.setAttribute("data-revealed", "1");
      button.textContent = "Hide";
    }).catch(function (err) { toast(err.message || "Could not reveal the value."); })
      .then(function () { button.disabled = false; });
  }

  function loadField(url, field) {
    return post(url).then(function (r) {
      if (!r.ok) throw new Error(r.data.message || "Not available.");
      return r.data[field];
    });
  }

  function revealEnv(button) {
    var code = button.parentElement.querySelector('[data-secret="value"]');
    toggleSecret(button, code, function () { return loadField(button.getAttribute("data-reveal-env"), "value"); });
  }

  function revealDatabase(button) {
    var box = button.closest("[data-connection]");
    var field = button.getAttribute("data-reveal-db");
    var code = button.parentElement.querySelector('[data-secret="' + field + '"]');
    toggleSecret(button, code, function () { return loadField(box.getAttribute("data-connection"), field); });
  }

  function revealCredentials(button) {
    var box = button.closest("li").querySelector("[data-creds]");
    if (!box.hidden) { box.hidden = true; button.textContent = "Show login"; return; }
    post(button.getAttribute("data-reveal-creds")).then(function (r) {
      if (!r.ok) { toast(r.data.message || "Not available."); return; }
      $('[data-field="username"]', box).textContent = r.data.username;
      $('[data-field="password"]', box).textContent = r.data.password;
      box.hidden = false;
      button.textContent = "Hide login";
    });
  }

  /* Forms submitted with fetch: errors appear next to their field without a reload. */
  function showErrors(form, errors) {
    $all("[data-error-for]", form).forEach(function (el) { el.hidden = true; el.textContent = ""; });
    $all(".has-error", form).forEach(function (el) { el.classList.remove("has-error"); });
    var firstField = null;
    Object.keys(errors || {}).forEach(function (name) {
      var key = name === "__all__" ? "__all__" : name;
      var slot = form.querySelector('[data-error-for="' + key + '"]') || form.querySelector('[data-error-for="__all__"]');
      if (!slot) return;
      slot.textContent = errors[name].join(" ");
      slot.hidden = false;
      var input = form.querySelector('[name="' + name + '"]');
      if (input) {
        input.closest(".field").classList.add("has-error");
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", slot.id || "");
        if (!firstField) firstField = input;
      }
    });
    if (firstField) firstField.focus();
  }

  function submitJson(form, kind) {
    var button = form.querySelector('[type="submit"]');
    var label = button.textContent;
    button.disabled = true;
    if (button.getAttribute("data-busy-label")) button.textContent = button.getAttribute("data-busy-label");
    request(form.action, { method: "POST", body: new FormData(form) }).then(function (r) {
      if (!r.ok) { showErrors(form, r.data.errors || { "__all__": [r.data.message || "Something went wrong."] }); return; }
      showErrors(form, {});
      if (kind === "create") { projectCreated(form, r.data); }
      if (kind === "kubeconfig") { kubeconfigSaved(form, r.data); }
    }).catch(function () {
      showErrors(form, { "__all__": ["Could not reach Tenter. Check your connection and try again."] });
    }).then(function () { button.disabled = false; button.textContent = label; });
  }

  /* ---------- Projects list ---------- */
  /* The list's counts, tabs and cards are server-rendered (templates/projects/_list_body.html) and,
     while something changes, re-fetched by htmx: no copy of that state lives here. */

  function projectCreated(form, data) {
    form.closest("dialog").close();
    window.location.href = data.url;  // land on the new project's page
  }

  var pending = $("dialog[data-open-on-load]");
  if (pending && pending.showModal) pending.showModal();

  /* ---------- Project page ---------- */

  var page = $("#project-page");
  var terminalLoaded = false;

  function loadTerminal() {
    var frame = $("#terminal");
    if (!frame || terminalLoaded) return;
    terminalLoaded = true;
    frame.hidden = false;
    post(page.getAttribute("data-terminal-url")).then(function (r) {
      if (!r.ok) { frame.innerHTML = ""; var p = document.createElement("p"); p.className = "terminal-loading"; p.textContent = r.data.message; frame.appendChild(p); terminalLoaded = false; return; }
      return probeTerminal().then(function (reachable) {
        var unreachable = $("#terminal-unreachable");
        if (unreachable) unreachable.hidden = reachable;
        frame.hidden = !reachable;
        if (reachable) embedTerminal(frame, r.data.url);
      });
    }).catch(function () { terminalLoaded = false; });
  }

  /* Can this browser reach the terminal's host at all? A no-cors request (its answer is opaque, so
     nothing of it is read) fails on a name that does not resolve or a host that does not answer.
     Without this check the frame shows the browser's own error page and no word on why. */
  function probeTerminal() {
    var box = $("#terminal-unreachable");
    var origin = box && box.getAttribute("data-probe");
    if (!origin || !window.fetch) return Promise.resolve(true);
    var timeout = new Promise(function (resolve) { setTimeout(function () { resolve(false); }, 10000); });
    var probe = fetch(origin + "/", { mode: "no-cors", credentials: "omit", cache: "no-store" })
      .then(function () { return true; }, function () { return false; });
    return Promise.race([probe, timeout]);
  }

  function embedTerminal(frame, url) {
    var iframe = document.createElement("iframe");
    iframe.title = "Terminal";
    iframe.setAttribute("allow", "clipboard-read; clipboard-write");
    iframe.src = url;
    frame.textContent = "";
    frame.appendChild(iframe);
  }

  document.addEventListener("click", function (event) {
    if (!event.target.closest("[data-retry-terminal]")) return;
    terminalLoaded = false;
    loadTerminal();
  });

  function unloadTerminal() {
    var frame = $("#terminal");
    if (!frame) return;
    terminalLoaded = false;
    frame.hidden = true;
    frame.innerHTML = '<p class="muted small terminal-loading">Connecting to the terminal…</p>';
    var unreachable = $("#terminal-unreachable");
    if (unreachable) unreachable.hidden = true;
  }

  function applySandbox(status) {
    page.setAttribute("data-sandbox-status", status || "");
    if (status === "RUNNING") { loadTerminal(); } else { unloadTerminal(); }
  }

  var lastHtml = {};
  function pollProject() {
    return request(page.getAttribute("data-live-url")).then(function (r) {
      var data = r.data;
      if (data.gone) {
        page.setAttribute("data-status", "TERMINATED");
        toast("The project has been deleted.");
        setTimeout(function () { window.location.href = data.list_url; }, 1200);
        return false;
      }
      Object.keys(data.html).forEach(function (region) {
        if (lastHtml[region] === data.html[region]) return;
        lastHtml[region] = data.html[region];
        var el = page.querySelector('[data-live="' + region + '"]');
        if (el && !el.contains(document.activeElement)) el.innerHTML = data.html[region];
        else if (el) lastHtml[region] = null;  // try again next time, without stealing focus
      });
      page.setAttribute("data-status", data.status);
      applySandbox(data.sandbox_status);
      settleLifecycleFlashes(data.transitional);
      return data.transitional;
    });
  }

  /* A lifecycle flash ("Stopping Web Shop.") tells what was asked; once the project is no longer in
     transition it says where the project ended up, from the server-rendered badge. */
  function settleLifecycleFlashes(transitional) {
    if (transitional) return;
    var badge = page.querySelector('[data-live="header"] [data-role="badge"]') || page.querySelector('[data-role="badge"]');
    var title = page.querySelector("h1");
    $all(".flash[data-lifecycle]").forEach(function (flash) {
      var text = flash.querySelector("span");
      if (!badge || !title || !text) { flash.remove(); return; }
      var status = badge.getAttribute("data-status");
      var label = (badge.querySelector('[data-role="badge-text"]') || badge).textContent.trim().toLowerCase();
      text.textContent = status === "ERROR"
        ? title.textContent.trim() + " failed: see below."
        : title.textContent.trim() + " is " + label + ".";
      flash.removeAttribute("data-lifecycle");
    });
  }

  if (page) {
    settleLifecycleFlashes(page.getAttribute("data-transitional") === "1");
    applySandbox(page.getAttribute("data-sandbox-status"));
    var projectPoller = new Poller(pollProject, 1500);
    if (page.getAttribute("data-transitional") === "1") projectPoller.start();
    // "Start and open" posts into a new tab: follow the start here too (see static/js/opening.js).
    document.addEventListener("submit", function (event) {
      if (!event.target.querySelector("[data-open]")) return;
      [1000, 3000, 6000].forEach(function (ms) { setTimeout(function () { projectPoller.start(); }, ms); });
    });
  }

  /* Delete confirmation: the button unlocks when the exact name is typed. */
  $all("[data-must-equal]").forEach(function (input) {
    var button = input.form.querySelector("[data-confirm-target]");
    input.addEventListener("input", function () {
      button.disabled = input.value !== input.getAttribute("data-must-equal");
    });
  });

  /* ---------- Settings ---------- */

  $all("[data-file-into]").forEach(function (input) {
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (!file) return;
      var reader = new FileReader();
      reader.onload = function () {
        var area = document.getElementById(input.getAttribute("data-file-into"));
        area.value = reader.result;
        area.focus();
        toast("Loaded " + file.name + ". Review it, then save.");
      };
      reader.readAsText(file);
    });
  });

  var kcState = $("#kc-state");
  var kcPoller = null;
  var CHECK_LABELS = { PENDING: "Checking…", OK: "Valid", FAILED: "Failed", UNREACHABLE: "Unreachable" };

  function renderKubeconfig(state) {
    if (!kcState) return;
    kcState.hidden = !state.configured;
    kcState.setAttribute("data-check-status", state.check_status || "");
    $('[data-kc="namespace"]', kcState).textContent = state.namespace;
    $('[data-kc="server_address"]', kcState).textContent = state.server_address;
    $('[data-kc="check_status"]', kcState).className = "badge kc-" + (state.check_status || "").toLowerCase();
    $('[data-kc="check_label"]', kcState).textContent = CHECK_LABELS[state.check_status] || "";
    $('[data-kc="checked_at"]', kcState).textContent = state.checked_at ? "checked just now" : "";
    $('[data-kc="check_message"]', kcState).textContent = state.check_message ||
      (state.check_status === "PENDING" ? "Asking the cluster what this kubeconfig may do…" : "");
  }

  var kcPending = $("#kc-pending");

  function pendingStatus(state) {
    return state.pending ? state.pending.check_status : "";
  }

  function pollKubeconfig() {
    return request(kcState.getAttribute("data-state-url")).then(function (r) {
      // A new kubeconfig waiting for its check: the server renders its block (and the choices on a
      // failure), so a change there reloads the page rather than keeping a second copy here.
      if (kcPending && pendingStatus(r.data) !== kcPending.getAttribute("data-pending-status")) {
        window.location.reload();
        return false;
      }
      renderKubeconfig(r.data);
      return r.data.check_status === "PENDING" || pendingStatus(r.data) === "PENDING";
    });
  }

  function kubeconfigSaved(form, state) {
    form.reset();
    if (state.pending) {
      window.location.reload();
      return;
    }
    renderKubeconfig(state);
    toast("Kubeconfig saved. Checking the cluster…");
    kcPoller.start();
  }

  if (kcState) {
    kcPoller = new Poller(pollKubeconfig, 1000);
    if (kcState.getAttribute("data-check-status") === "PENDING" ||
        (kcPending && kcPending.getAttribute("data-pending-status") === "PENDING")) kcPoller.start();
  }
})();
