// Live regions: an element with data-live="<url>" is refreshed from that fragment every
// data-live-ms milliseconds while the page is visible. A 401 (session ended) reloads the page,
// which then shows the sign-in form. No inline script anywhere: the CSP forbids it.
(function () {
  "use strict";

  function refresh(region) {
    if (document.hidden) {
      return Promise.resolve();
    }
    return fetch(region.dataset.live, {
      credentials: "same-origin",
      headers: { "Accept": "text/html" },
      cache: "no-store"
    }).then(function (response) {
      if (response.status === 401) {
        window.location.reload();
        return;
      }
      if (!response.ok) {
        region.setAttribute("aria-busy", "false");
        return;
      }
      return response.text().then(function (html) {
        // Keep the focused element's place: replace only when the content changed.
        if (region.dataset.lastHtml !== html) {
          var focused = document.activeElement && region.contains(document.activeElement)
            ? document.activeElement.getAttribute("href") : null;
          region.innerHTML = html;
          region.dataset.lastHtml = html;
          if (focused) {
            var again = region.querySelector('[href="' + CSS.escape(focused) + '"]');
            if (again) { again.focus(); }
          }
        }
      });
    }).catch(function () { /* the next round tries again */ });
  }

  function start(region) {
    var every = parseInt(region.dataset.liveMs || "2000", 10);
    function loop() {
      refresh(region).then(function () { window.setTimeout(loop, every); });
    }
    window.setTimeout(loop, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(start);
  });
})();
