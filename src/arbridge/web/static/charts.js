/* Draws the dashboard's charts from the tables beside them (so the page reads the same without
   JavaScript, and the CSP needs no inline script). A <figure data-chart="KIND"> holds a table
   whose <thead> names the series and whose rows carry data-label and cells data-value:
   "stacked": one horizontal bar per row, each column a slice;
   "lines": the rows along the x axis, one line per column;
   "bars": the rows along the x axis, one bar per row (the first column). */
(function () {
  "use strict";
  var COLOURS = ["#2f855a", "#d69e2e", "#dd6b20", "#c53030", "#742a2a", "#2b6cb0"];
  var NARROW = window.matchMedia("(max-width: 640px)").matches;
  var COMPACT = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

  function compact(value) { return COMPACT.format(value); }

  function read(table) {
    var names = Array.prototype.map.call(
      table.querySelectorAll("thead th[data-series]"), function (th) { return th.textContent.trim(); });
    var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-label]"));
    return {
      names: names,
      labels: rows.map(function (tr) { return tr.getAttribute("data-label"); }),
      columns: names.map(function (_n, i) {
        return rows.map(function (tr) {
          var cell = tr.querySelectorAll("[data-value]")[i];
          var raw = cell ? cell.getAttribute("data-value") : "";
          return raw === "" ? null : Number(raw);
        });
      })
    };
  }

  function config(kind, data) {
    if (kind === "stacked") {
      return {
        type: "bar",
        data: {
          labels: data.labels,
          datasets: data.names.map(function (name, i) {
            return { label: name, data: data.columns[i], backgroundColor: COLOURS[i % COLOURS.length] };
          })
        },
        options: { indexAxis: "y", animation: false, maintainAspectRatio: false,
                   // Amounts as "100K" and fewer of them on a phone: at 390 px the full numbers
                   // ran together ("100,000200,000") and the legend's last entry was cut.
                   scales: { x: { stacked: true, ticks: { maxTicksLimit: NARROW ? 4 : 8,
                                                           callback: compact } },
                             y: { stacked: true } },
                   plugins: { legend: { labels: { boxWidth: NARROW ? 10 : 40,
                                                  font: { size: NARROW ? 11 : 12 } } } } }
      };
    }
    if (kind === "lines") {
      return {
        type: "line",
        data: {
          labels: data.labels,
          datasets: data.names.map(function (name, i) {
            return { label: name, data: data.columns[i], borderColor: COLOURS[(i * 3 + 5) % COLOURS.length],
                     backgroundColor: COLOURS[(i * 3 + 5) % COLOURS.length], spanGaps: false,
                     yAxisID: i === 0 ? "y" : "y1" };
          })
        },
        options: { animation: false, maintainAspectRatio: false,
                   scales: { y: { position: "left", title: { display: true, text: data.names[0] } },
                             y1: { position: "right", grid: { drawOnChartArea: false },
                                   title: { display: true, text: data.names[1] || "" } } } }
      };
    }
    return {
      type: "bar",
      data: { labels: data.labels,
              datasets: [{ label: data.names[0], data: data.columns[0], backgroundColor: COLOURS[5] }] },
      options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } } }
    };
  }

  function draw() {
    if (typeof window.Chart === "undefined") { return; }
    Array.prototype.forEach.call(document.querySelectorAll("figure[data-chart]"), function (figure) {
      var table = figure.querySelector("table");
      if (!table) { return; }
      var box = document.createElement("div");
      box.className = "chart-box chart-" + figure.getAttribute("data-chart");
      var canvas = document.createElement("canvas");
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", figure.querySelector("figcaption").textContent.trim());
      box.appendChild(canvas);
      figure.insertBefore(box, figure.querySelector(".chart-numbers"));
      new window.Chart(canvas, config(figure.getAttribute("data-chart"), read(table)));
      // The chart now says it at a glance: the numbers stay one click away.
      var numbers = figure.querySelector(".chart-numbers");
      var details = document.createElement("details");
      var summary = document.createElement("summary");
      summary.textContent = "The numbers";
      details.appendChild(summary);
      figure.insertBefore(details, numbers);
      details.appendChild(numbers);
      figure.classList.add("charted");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
