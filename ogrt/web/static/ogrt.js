/* OGRT dashboard: draws the page's time-series plots with uPlot (vendored, see VENDORED.txt).
   The data comes from <script type="application/json" class="plot-data"> blocks of the page
   (no inline script runs: the Content-Security-Policy allows only these files). */
"use strict";

(function () {
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

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
    var width = Math.max(320, Math.min(target.clientWidth || 900, 1200));
    var opts = {
      width: width, height: 220, series: series,
      scales: { x: { time: true } },
      axes: [{}, { size: 60 }]
    };
    if (data.x.length === 0) {
      target.textContent = "No data for these filters.";
      return;
    }
    var plot = new uPlot(opts, columns, target);
    target.setAttribute("data-drawn", "1");
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(320, Math.min(target.clientWidth || 900, 1200)), height: 220 });
    });
  }

  function init() {
    var blocks = document.querySelectorAll("script.plot-data");
    for (var i = 0; i < blocks.length; i++) { draw(blocks[i]); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); }
  else { init(); }
})();
