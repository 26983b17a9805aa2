// llmroute's dashboard: fetches /dashboard/data every few seconds and puts
// the page's new body in place. Without this script the page reloads
// itself (a <noscript> refresh), so it reads the same either way.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var status = document.getElementById("live-status");
  var every = 2000;
  var failures = 0;

  function say(text) {
    if (status) status.textContent = text;
  }

  function tick() {
    fetch("/dashboard/data", {
      credentials: "same-origin",
      cache: "no-store",
      headers: { accept: "application/json" },
    })
      .then(function (r) {
        if (r.status === 401) {
          // Signed out elsewhere, or the server's tokens changed.
          window.location.reload();
          throw new Error("signed out");
        }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (d) {
        var open = Array.prototype.map.call(main.querySelectorAll("details"), function (el) {
          return el.open;
        });
        main.innerHTML = d.html;
        Array.prototype.forEach.call(main.querySelectorAll("details"), function (el, i) {
          if (open[i]) el.open = true;
        });
        document.body.setAttribute("data-updated", String(d.generated_ms));
        failures = 0;
        say("live");
      })
      .catch(function (e) {
        failures += 1;
        say("not updating (" + e.message + "); trying again");
      })
      .then(function () {
        setTimeout(tick, Math.min(every * (1 + failures), 30000));
      });
  }

  say("live");
  setTimeout(tick, every);
})();
