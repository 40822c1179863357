/* A table row with data-href opens its page when clicked anywhere (the mailbox's sent emails);
   its own link stays the keyboard's and a screen reader's way in. A file of its own because the
   Content-Security-Policy allows no inline script. */
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element) || target.closest("a, button, input, select, textarea")) {
      return;
    }
    var row = target.closest("tr[data-href]");
    if (row && !(window.getSelection && String(window.getSelection()))) {
      window.location.assign(row.getAttribute("data-href"));
    }
  });
})();
