// App Settings: Test connection and the data-extension install (start, then poll its progress).
// Every POST carries the session's CSRF token (meta csrf-token) in the X-CSRF-Token header.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

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

  var testButton = document.getElementById("test-connection");
  var testResult = document.getElementById("test-result");
  if (testButton) {
    testButton.addEventListener("click", function () {
      testButton.disabled = true;
      text(testResult, "Checking…");
      call("POST", testButton.dataset.url).then(function (answer) {
        var body = answer.body;
        if (answer.status !== 200) {
          text(testResult, body.message || "Check failed", "bad");
          return;
        }
        var parts = [["Rokt", body.rokt], ["Marketing Cloud", body.sfmc]].map(function (item) {
          return item[0] + ": " + (item[1].ok ? "OK" : "failed – " + item[1].reason);
        });
        text(testResult, parts.join(" · "), body.ok ? "good" : "bad");
      }).catch(function () {
        text(testResult, "Could not reach the service", "bad");
      }).then(function () { testButton.disabled = false; });
    });
  }

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
    }).catch(function () { setTimeout(poll, 5000); });
  }

  if (installButton) {
    installButton.addEventListener("click", function () {
      installButton.disabled = true;
      call("POST", installButton.dataset.url).then(function (answer) {
        if (answer.status === 202) { showProgress(answer.body); }
        else if (answer.status === 409) { showProgress(answer.body.progress); }
        else { text(installState, answer.body.message || "Install failed to start", "bad"); installButton.disabled = false; }
      }).catch(function () {
        text(installState, "Could not reach the service", "bad");
        installButton.disabled = false;
      });
    });
    var state = installButton.dataset.state;
    if (state === "queued" || state === "running") { poll(); }
  }
})();
