// Small enhancements only: every page works without this file.
// A held time's countdown: <p data-expires="ISO moment" data-left="({m}:{s} …)">.
(function () {
  "use strict";
  var held = document.querySelector("[data-expires]");
  if (!held) return;
  var until = Date.parse(held.getAttribute("data-expires"));
  if (isNaN(until)) return;
  var out = document.createElement("span");
  out.className = "countdown";
  out.setAttribute("aria-hidden", "true"); // visual only: the text already names the time
  held.appendChild(document.createTextNode(" "));
  held.appendChild(out);
  var template = held.getAttribute("data-left") || "{m}:{s}";
  function tick() {
    var left = Math.max(0, Math.round((until - Date.now()) / 1000));
    var m = Math.floor(left / 60), s = left % 60;
    out.textContent = template.replace("{m}", String(m)).replace("{s}", (s < 10 ? "0" : "") + s);
    if (left > 0) window.setTimeout(tick, 1000);
  }
  tick();
})();
