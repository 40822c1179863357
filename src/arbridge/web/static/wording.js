/* The reminder wording editor: buttons that insert a merge field where the cursor is, and a
   preview rendered by the server (with inert sample links) as the owner types. A file of its own
   because the Content-Security-Policy allows no inline script. Without it the page still works:
   the fields are listed, and the Preview button posts the form for a full page. */
(function () {
  "use strict";
  var form = document.getElementById("wording-form");
  if (!form) {
    return;
  }
  var fields = ["subject", "text", "html"].map(function (id) {
    return document.getElementById(id);
  }).filter(Boolean);
  var last = document.getElementById("text");
  fields.forEach(function (el) {
    el.addEventListener("focus", function () { last = el; });
  });

  function insert(el, snippet) {
    var start = typeof el.selectionStart === "number" ? el.selectionStart : el.value.length;
    var end = typeof el.selectionEnd === "number" ? el.selectionEnd : start;
    el.value = el.value.slice(0, start) + snippet + el.value.slice(end);
    el.focus();
    el.setSelectionRange(start + snippet.length, start + snippet.length);
    el.dispatchEvent(new Event("input", { bubbles: true }));
  }

  var buttons = document.querySelectorAll("#merge-fields [data-insert]");
  Array.prototype.forEach.call(buttons, function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      insert(last, button.getAttribute("data-insert"));
    });
  });
  var list = document.getElementById("merge-list");
  if (list && buttons.length) {
    list.hidden = true;
  }

  var url = form.getAttribute("data-preview");
  var out = document.getElementById("wording-preview");
  if (!url || !out || !window.fetch || !window.URLSearchParams) {
    return;
  }
  var timer = null;
  var asked = 0;
  function refresh() {
    var mine = ++asked;
    var body = new URLSearchParams(new FormData(form));
    window.fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Requested-With": "fetch" }
    }).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html !== null && mine === asked) {  /* only the latest answer is shown */
        out.innerHTML = html;
        out.setAttribute("data-refreshed", String(mine));
      }
    }).catch(function () { /* the last preview stays; the Preview button still works */ });
  }

  /* The HTML version, as typed: the form posted into a new frame (a frame's first navigation
     replaces its blank page, so the typing leaves no trail in the Back button's history); the
     old frame goes once the new one has loaded. */
  var holder = document.getElementById("html-preview");
  function refreshHtml(mine) {
    if (!holder) {
      return;
    }
    var frame = document.createElement("iframe");
    frame.name = "html-preview-" + mine;
    frame.className = "email";
    frame.title = "The HTML version of the email, as typed";
    frame.setAttribute("sandbox", "");
    frame.hidden = true;
    holder.appendChild(frame);
    frame.addEventListener("load", function () {
      if (mine !== asked) {
        holder.removeChild(frame);
        return;
      }
      Array.prototype.forEach.call(holder.querySelectorAll("iframe"), function (old) {
        if (old !== frame) {
          holder.removeChild(old);
        }
      });
      frame.hidden = false;
      holder.setAttribute("data-refreshed", String(mine));
    });
    var part = document.createElement("input");
    part.type = "hidden";
    part.name = "part";
    part.value = "html";
    form.appendChild(part);
    var action = form.getAttribute("action");
    form.setAttribute("action", url);
    form.setAttribute("target", frame.name);
    form.submit();
    form.removeChild(part);
    form.setAttribute("action", action);
    form.removeAttribute("target");
  }
  form.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(function () {
      refresh();
      refreshHtml(asked);
    }, 350);
  });
})();
