// The Performance page's CSV download. A plain link would be fetched by the browser's download
// manager, which does not send this frame's partitioned session cookie (Marketing Cloud frames the
// app from another site), so the answer would be a sign-in. The page fetches the CSV itself (its
// session goes along), then saves it under the name the server gives. Without this script the
// link still works when the app is opened on its own (not framed).
(function () {
  "use strict";
  var status = document.getElementById("csv-status");

  function say(text) {
    if (status) { status.textContent = text; status.hidden = !text; }
  }

  function fileName(response) {
    var found = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    return found ? found[1] : "rokt-calendar-performance.csv";
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.csv") : null;
    if (!link) { return; }
    event.preventDefault();
    say("");
    fetch(link.href, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.ok) {
          return response.blob().then(function (blob) { return { name: fileName(response), blob: blob }; });
        }
        return response.json().catch(function () { return {}; }).then(function (body) {
          var message = body.message || ("the server answered " + response.status);
          if (response.status === 401) { message = "Your session ended: open the app again, then download."; }
          throw new Error(message);
        });
      })
      .then(function (file) {
        var url = URL.createObjectURL(file.blob);
        var save = document.createElement("a");
        save.href = url;
        save.download = file.name;
        document.body.appendChild(save);
        save.click();
        save.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
      })
      .catch(function (error) { say("Not downloaded: " + error.message); });
  });
}());
