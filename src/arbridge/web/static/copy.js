/* A "Copy" button for a long link shown on the page (the invoice page's payment link): the
   button is <button data-copy="ID of the element holding the text" hidden>, shown by this
   script only (without script the link stays readable and selectable by hand). A click selects
   the text, then copies it through the Clipboard API, or the older copy command; where neither
   is allowed (no permission, a page not served over https) the text stays selected and the
   button says to press Ctrl+C. A file of its own: the Content-Security-Policy allows no inline
   script. */
(function () {
  "use strict";

  function select(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function say(button, label, message) {
    button.textContent = label;
    var status = document.getElementById(button.id + "-status");
    if (status) {
      status.textContent = message;
    }
  }

  function copied(button) {
    say(button, "Copied", "The link is copied: paste it into your message.");
  }

  function selectedOnly(button) {
    say(button, "Selected", "The link is selected: press Ctrl+C (\u2318C on a Mac) to copy it.");
  }

  function olderCopy() {
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  function setUp(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = target.textContent.trim();
      select(target);
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          function () { copied(button); },
          function () {
            select(target);
            (olderCopy() ? copied : selectedOnly)(button);
          }
        );
      } else {
        (olderCopy() ? copied : selectedOnly)(button);
      }
    });
  }

  var buttons = document.querySelectorAll("button[data-copy]");
  for (var i = 0; i < buttons.length; i++) {
    setUp(buttons[i]);
  }
})();
