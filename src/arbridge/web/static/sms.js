/* The text message editor: characters and segments as the owner types, counted the way
   carriers count them (GSM-7: 160 in one segment, 153 each when split, the extension table's
   characters taking two; anything outside GSM-7 makes the whole text UCS-2: 70, or 67 each).
   Counts the wording plus the opt-out line arbridge adds; merge fields are counted as typed, so
   the server's count of the sample (shown before typing) is the closer one for long fields.
   A file of its own because the Content-Security-Policy allows no inline script. */
(function () {
  "use strict";
  var box = document.getElementById("sms-template");
  var out = document.getElementById("sms-length");
  if (!box || !out) {
    return;
  }
  var BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u001bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var EXTENDED = "^{}\\[~]|€\f";
  var OPT_OUT = " Reply STOP to opt out.";

  function count(text) {
    var gsm = true, septets = 0, units = 0, chars = 0, i, c;
    for (i = 0; i < text.length; i++) {
      c = text.charAt(i);
      units += 1;
      if (EXTENDED.indexOf(c) >= 0) {
        septets += 2;
      } else if (BASIC.indexOf(c) >= 0) {
        septets += 1;
      } else {
        gsm = false;
      }
    }
    chars = Array.from ? Array.from(text).length : text.length;
    var n = gsm ? septets : units, single = gsm ? 160 : 70, multi = gsm ? 153 : 67;
    var segments = n === 0 ? 0 : (n <= single ? 1 : Math.ceil(n / multi));
    return counted(chars, "character") + ", " + counted(segments, "segment") + " (" +
      (gsm ? "GSM-7" : "UCS-2") + ", " + (n <= single ? single : multi) + " per segment)";
  }

  // As the server writes a count (arbridge.wording.counted): "1 segment", "2 segments".
  function counted(n, noun) {
    return n + " " + (n === 1 ? noun : noun + "s");
  }

  function update() {
    var wording = box.value.trim() || box.getAttribute("data-default") || "";
    out.textContent = "As typed, with the opt-out line: " +
      count(wording.split(/\s+/).join(" ") + OPT_OUT);
  }
  box.addEventListener("input", update);
})();
