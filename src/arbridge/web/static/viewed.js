/* Receipt confirmed: tells the business that this page was opened in a browser, by a POST with
   the page's CSRF token once it has loaded. The page's GET changes nothing, so a mail scanner or
   link preview that fetches the link (and runs no script) never marks the invoice viewed.
   A file of its own because the Content-Security-Policy allows no inline script. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch || !window.URLSearchParams) {
    return;
  }
  var body = new URLSearchParams();
  body.set("csrf_token", script.getAttribute("data-csrf") || "");
  window.fetch(script.getAttribute("data-viewed"), {
    method: "POST",
    body: body,
    credentials: "same-origin",
    cache: "no-store"
  }).catch(function () { /* a lost view is only a lost note to the business */ });
})();
