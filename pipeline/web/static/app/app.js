// App Settings: Save (asks the server first whether this page's session still holds, so a stale or
// ended session never replaces the form), Test connection (also run by itself after a Save), the
// data-extension install (start, then poll its progress), and the unsaved edits kept across a sign-in.
// Every POST carries the session's CSRF token (meta csrf-token) in the X-CSRF-Token header.
// Secrets typed in the form are never stored anywhere by this script: only the other fields are kept.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var form = document.getElementById("settings-form");

  function call(method, url) {
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
    }).then(function (response) {
      return response.json().then(function (body) { return { status: response.status, body: body }; });
    });
  }

  function text(el, value, cls) {
    el.textContent = value;
    el.className = cls || "";
  }

  // -- unsaved edits, kept while the admin signs in again ----------------------------------------
  // In a cookie of this frame's own partition (CHIPS, like the session's): Marketing Cloud frames
  // the app from another site, where browsers that block third-party cookies deny sessionStorage
  // and localStorage altogether. `__Host-` and Secure: no other site or subdomain can plant one.
  // Ten minutes, enough for the silent sign-in round trip; read once, then deleted.
  var DRAFT_COOKIE = "__Host-rokt_sfmc_draft";
  var COOKIE_TAIL = "; Path=/; Secure; SameSite=None; Partitioned";

  function setDraftCookie(value, maxAge) {
    document.cookie = DRAFT_COOKIE + "=" + value + COOKIE_TAIL + "; Max-Age=" + maxAge;
  }

  function fieldLabel(input) {
    var label = document.querySelector('label[for="' + input.id + '"]');
    return label ? label.firstChild.textContent.trim() : input.name;
  }

  function editableInputs() {
    return form ? Array.prototype.slice.call(form.querySelectorAll("fieldset input[name]")) : [];
  }

  // what differs from what the page was rendered with; secrets only by name, never by value
  function saveDraft() {
    if (!form) { return; }
    var values = {}, secrets = [], changed = false;
    editableInputs().forEach(function (input) {
      if (input.value === input.defaultValue) { return; }
      changed = true;
      if (input.dataset.secret) { secrets.push(input.name); } else { values[input.name] = input.value; }
    });
    if (!changed) { setDraftCookie("", 0); return; }
    setDraftCookie(encodeURIComponent(JSON.stringify(
      { tenant: form.dataset.tenant, values: values, secrets: secrets })), 600);
  }

  function takeDraft() {
    var found = document.cookie.split("; ").filter(function (c) { return c.indexOf(DRAFT_COOKIE + "=") === 0; })[0];
    if (!found) { return null; }
    setDraftCookie("", 0);
    try { return JSON.parse(decodeURIComponent(found.slice(DRAFT_COOKIE.length + 1))); } catch (e) { return null; }
  }

  function restoreDraft() {
    if (!form) { return; }
    if (form.dataset.answer) { takeDraft(); return; }  // the server answered a Save: it shows what was sent
    var draft = takeDraft();
    if (!draft || !draft.values) { return; }
    var notice = document.getElementById("restored");
    if (draft.tenant !== form.dataset.tenant) {
      text(notice, "Your unsaved changes were made for " + draft.tenant + ", not for " + form.dataset.tenant +
        " that you are signed in to now, so they were not filled in.", "notice bad");
      notice.hidden = false;
      return;
    }
    var restored = [], first = null;
    Object.keys(draft.values).forEach(function (name) {
      var input = form.elements.namedItem(name);
      if (!input || input.dataset.secret) { return; }
      input.value = String(draft.values[name]);
      restored.push(fieldLabel(input));
      first = first || input;
    });
    var retype = (draft.secrets || []).map(function (name) {
      var input = form.elements.namedItem(name);
      return input ? fieldLabel(input) : name;
    });
    if (!restored.length && !retype.length) { return; }
    var words = restored.length ? "Your unsaved changes are back in the form (" + restored.join(", ") +
      "): check them, then Save." : "";
    if (retype.length) {
      words += (words ? " " : "") + "Secrets are never kept: type " + retype.join(", ") + " again, then Save.";
      first = first || form.elements.namedItem(draft.secrets[0]);
    }
    text(notice, words, "notice");
    notice.hidden = false;
    if (first) { first.focus(); }
  }

  // -- a refused request: say what happened where it happened, offer the sign-in ----------------
  function showProblem(el, body, fallback) {
    el.replaceChildren(document.createTextNode((body && body.message) || fallback));
    if (body && body.signIn) {
      var link = document.createElement("a");
      link.href = body.signIn;
      link.textContent = "Sign in again now";
      link.className = "sign-in-again";
      link.addEventListener("click", saveDraft);
      el.appendChild(document.createTextNode(" "));
      el.appendChild(link);
    }
    el.className = el.classList.contains("form-problem") ? "notice bad form-problem" : "bad";
    el.hidden = false;
  }

  // every sign-in link of the page keeps the edits too (e.g. the error page's, the reconnect notice)
  Array.prototype.forEach.call(document.querySelectorAll('a[href$="/app/login"]'), function (link) {
    link.addEventListener("click", saveDraft);
  });

  // -- Save, and the webhook forms: asked first whether the session still holds ---------------
  Array.prototype.forEach.call(document.querySelectorAll("form[data-guarded]"), function (guarded) {
    var problem = guarded.querySelector(".form-problem");
    var sending = false;
    guarded.addEventListener("submit", function (event) {
      event.preventDefault();
      if (sending) { return; }
      sending = true;
      problem.hidden = true;
      call("POST", guarded.dataset.checkUrl).then(function (answer) {
        if (answer.status === 200) {
          saveDraft();  // the settings edits survive this POST's answer (it replaces the page)
          guarded.submit();
          return;
        }
        sending = false;
        showProblem(problem, answer.body, "Not done: the service refused the request.");
        var link = problem.querySelector("a");
        if (link) { link.focus(); }
      }).catch(function () {
        sending = false;
        showProblem(problem, null, "Not done: could not reach the service. Your changes are still here; try again.");
      });
    });
  });
  if (form && form.dataset.answer === "refused") {  // the server refused some fields: go to the first
    var invalid = form.querySelector('[aria-invalid="true"]');
    if (invalid) { invalid.focus(); }
  }

  // -- status: badge, "Still missing", Tokens row ------------------------------------------------
  function refreshStatus(body) {
    var badge = document.getElementById("badge");
    if (badge && body.status) { text(badge, body.status, "badge status-" + body.status); }
    var tenantStatus = document.getElementById("status-tenant");
    if (tenantStatus && body.status) { tenantStatus.textContent = body.status; }
    var tokens = document.getElementById("status-tokens");
    if (tokens && body.tokens) {
      tokens.replaceChildren.apply(tokens, body.tokens.map(function (row) {
        var span = document.createElement("span");
        span.className = "token " + ({ ok: "good", failed: "bad" }[row.state] || "");
        span.dataset.vendor = row.vendor;
        span.textContent = row.text;
        return span;
      }));
    }
    var missing = document.getElementById("missing-list");
    if (missing && body.missing) {
      missing.replaceChildren();
      body.missing.forEach(function (item, i) {
        if (i) { missing.appendChild(document.createTextNode(", ")); }
        var node = document.createTextNode(item.label);
        if (item.onForm) {
          node = document.createElement("a");
          node.href = "#" + item.field;
          node.textContent = item.label;
        }
        missing.appendChild(node);
      });
      document.getElementById("missing").hidden = !body.missing.length;
    }
  }

  // -- Test connection ---------------------------------------------------------------------------
  var testButton = document.getElementById("test-connection");
  var testResult = document.getElementById("test-result");
  function runTest() {
    testButton.disabled = true;
    text(testResult, "Checking…");
    call("POST", testButton.dataset.url).then(function (answer) {
      var body = answer.body;
      if (answer.status !== 200) {
        showProblem(testResult, body, "Check failed");
        return;
      }
      var parts = [["Rokt", body.rokt], ["Marketing Cloud", body.sfmc]].map(function (item) {
        return item[0] + ": " + (item[1].ok ? "OK" : "failed \u2013 " + item[1].reason);
      });
      text(testResult, parts.join(" · "), body.ok ? "good" : "bad");
      refreshStatus(body);
    }).catch(function () {
      text(testResult, "Could not reach the service", "bad");
    }).then(function () { testButton.disabled = false; });
  }
  if (testButton) {
    testButton.addEventListener("click", runTest);
  }

  // -- Install -----------------------------------------------------------------------------------
  var installButton = document.getElementById("install");
  var installState = document.getElementById("install-state");
  var installSteps = document.getElementById("install-steps");
  var contactBuilder = document.getElementById("contact-builder");
  var statusInstalled = document.getElementById("status-installed");

  function showProgress(progress) {
    text(installState, progress.state + (progress.error ? ": " + progress.error : ""),
      progress.state === "done" ? "good" : progress.state === "failed" ? "bad" : "");
    installSteps.replaceChildren.apply(installSteps, (progress.steps || []).map(function (step) {
      var li = document.createElement("li");
      li.textContent = step.name + ": " + step.result + (step.detail ? " (" + step.detail + ")" : "");
      return li;
    }));
    if (contactBuilder) { contactBuilder.hidden = progress.state !== "done"; }
    if (statusInstalled && progress.state === "done") { text(statusInstalled, "installed", "good"); }
    var busy = progress.state === "queued" || progress.state === "running";
    installButton.disabled = busy;
    if (busy) { setTimeout(poll, 2000); }
  }

  function poll() {
    call("GET", installButton.dataset.statusUrl).then(function (answer) {
      if (answer.status === 200) { showProgress(answer.body); }
      else { showProblem(installState, answer.body, "Could not read the install's progress"); installButton.disabled = false; }
    }).catch(function () { setTimeout(poll, 5000); });
  }

  if (installButton) {
    installButton.addEventListener("click", function () {
      installButton.disabled = true;
      call("POST", installButton.dataset.url).then(function (answer) {
        if (answer.status === 202) { showProgress(answer.body); }
        else if (answer.status === 409) { showProgress(answer.body.progress); }
        else { showProblem(installState, answer.body, "Install failed to start"); installButton.disabled = false; }
      }).catch(function () {
        text(installState, "Could not reach the service", "bad");
        installButton.disabled = false;
      });
    });
    var state = installButton.dataset.state;
    if (state === "queued" || state === "running") { poll(); }
  }

  restoreDraft();
  if (testButton && testButton.dataset.autorun) { runTest(); }  // a Save is checked at once
})();
