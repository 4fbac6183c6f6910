// Millrace dashboard: refreshes every element with data-poll="URL" every
// 2 s by fetching URL (same origin, with the page's cookie or basic auth)
// and replacing the element's content. Skipped while the tab is hidden.
// Nothing else: every action is a plain HTML form.
(function () {
  "use strict";
  var EVERY = 2000;
  function poll(el) {
    var again = function () { setTimeout(function () { poll(el); }, EVERY); };
    if (document.hidden) { again(); return; }
    fetch(el.getAttribute("data-poll"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) { el.innerHTML = html; el.removeAttribute("data-stale"); }
        else { el.setAttribute("data-stale", "1"); }
      })
      .catch(function () { el.setAttribute("data-stale", "1"); })
      .then(again);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(function (el) {
      setTimeout(function () { poll(el); }, EVERY);
    });
  });
})();
