/* OGRT dashboard: draws the page's time-series plots with uPlot (vendored, see VENDORED.txt).
   The data comes from <script type="application/json" class="plot-data"> blocks of the page
   (no inline script runs: the Content-Security-Policy allows only these files). */
"use strict";

(function () {
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

  function chartWidth(target) {
    var main = document.querySelector("main");
    return Math.max(320, Math.min((main ? main.clientWidth : 900) - 40, 1100));
  }

  function draw(block) {
    var data = JSON.parse(block.textContent);
    var id = block.id.replace(/^plot-/, "");
    var target = document.getElementById("chart-" + id);
    if (!target || !window.uPlot) { return; }
    var series = [{}];
    var columns = [data.x];
    data.series.forEach(function (s, i) {
      var spec = { label: s.label, stroke: COLORS[i % COLORS.length], width: 2,
                   points: { show: data.x.length < 60 } };
      if (data.kind === "step") { spec.paths = uPlot.paths.stepped({ align: 1 }); }
      series.push(spec);
      columns.push(s.values);
    });
    var width = chartWidth(target);
    var x = { time: true };
    if (data.x.length === 1) {  /* one day: a range around it, not years */
      x.range = function () { return [data.x[0] - 86400, data.x[0] + 86400]; };
    }
    var opts = {
      width: width, height: 220, series: series,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      scales: { x: x, y: { range: function (u, lo, hi) { return [0, Math.max(1, hi * 1.1)]; } } },
      axes: [{}, { size: 60 }]
    };
    if (data.x.length === 0) {
      target.textContent = "No data for these filters.";
      return;
    }
    var plot = new uPlot(opts, columns, target);
    target.setAttribute("data-drawn", "1");
    window.addEventListener("resize", function () {
      plot.setSize({ width: chartWidth(target), height: 220 });
    });
  }

  function init() {
    var blocks = document.querySelectorAll("script.plot-data");
    for (var i = 0; i < blocks.length; i++) { draw(blocks[i]); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); }
  else { init(); }
})();
