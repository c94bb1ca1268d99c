// Draws every server-built figure: <script type="application/json" data-chart="ID"> -> #ID.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var blocks = document.querySelectorAll('script[type="application/json"][data-chart]');
  blocks.forEach(function (block) {
    var target = document.getElementById(block.getAttribute("data-chart"));
    if (!target || typeof Plotly === "undefined") {
      return;
    }
    var figure = JSON.parse(block.textContent);
    Plotly.newPlot(target, figure.data || [], figure.layout || {}, {
      displaylogo: false,
      responsive: true,
    });
  });
  // A chart drawn inside a closed <details> has no width yet: fit it when it is opened.
  document.querySelectorAll("details").forEach(function (details) {
    details.addEventListener("toggle", function () {
      if (!details.open || typeof Plotly === "undefined") {
        return;
      }
      details.querySelectorAll(".js-plotly-plot").forEach(function (plot) {
        Plotly.Plots.resize(plot);
      });
    });
  });
});
