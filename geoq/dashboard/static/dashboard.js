// geoq dashboard: charts (uPlot) and confirmations. No inline script anywhere: the page's
// Content-Security-Policy allows only files served by the dashboard itself.
(function () {
  "use strict";
  var COLORS = ["#3e63dd", "#e5484d", "#8e4ec6", "#12a594", "#f76b15"];

  function fmt(unit) {
    return function (u, v) {
      if (v == null) return "-";
      if (unit === "s") return v < 1 ? (v * 1000).toFixed(0) + " ms" : v.toFixed(v < 10 ? 2 : 0) + " s";
      return v.toLocaleString();
    };
  }

  // A value with no value either side draws no line: mark it with a point, or a minute of
  // waits between empty minutes would not show at all (uPlot: points.filter gives the indices).
  function isolated(u, si, show) {
    if (show) return null;
    var v = u.data[si], out = [];
    for (var i = 0; i < v.length; i++) {
      if (v[i] != null && (i === 0 || v[i - 1] == null) && (i === v.length - 1 || v[i + 1] == null)) out.push(i);
    }
    return out.length ? out : null;
  }

  function draw(el) {
    var spec = JSON.parse(el.getAttribute("data-chart"));
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    var series = [{}].concat(spec.series.map(function (s, i) {
      return { label: s.label, stroke: COLORS[i % COLORS.length], width: 1.6, value: fmt(spec.unit),
               fill: i === 0 && spec.unit !== "s" ? "rgba(62,99,221,0.08)" : undefined, spanGaps: false,
               points: { show: spec.x.length <= 30, filter: isolated, size: 7,
                         fill: COLORS[i % COLORS.length] } };
    }));
    var opts = {
      width: Math.max(300, el.clientWidth), height: el.classList.contains("small") ? 170 : 230,
      series: series, cursor: { drag: { x: false, y: false } },
      axes: [{ stroke: "#667085", grid: { stroke: "#eef0f4" } },
             { stroke: "#667085", grid: { stroke: "#eef0f4" }, size: 60,
               values: function (u, vals) { return vals.map(function (v) { return fmt(spec.unit)(u, v); }); } }],
      scales: { y: { range: function (u, lo, hi) { return [0, Math.max((hi || 0) * 1.1, spec.unit === "s" ? 0.01 : 1)]; } } }
    };
    el.textContent = "";
    var plot = new uPlot(opts, data, el);
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(300, el.clientWidth), height: opts.height });
    });
  }

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  // Auto-refresh, remembered across pages; it never re-sends a form (a reload of a GET only).
  function autoRefresh() {
    var box = document.getElementById("auto-refresh");
    if (!box) return;
    var key = "geoq-auto-refresh", timer = null;
    function arm() {
      if (timer) window.clearTimeout(timer);
      timer = box.checked ? window.setTimeout(function () { window.location.reload(); }, 5000) : null;
    }
    try { box.checked = window.localStorage.getItem(key) === "1"; } catch (e) { /* storage off */ }
    box.addEventListener("change", function () {
      try { window.localStorage.setItem(key, box.checked ? "1" : "0"); } catch (e) { /* storage off */ }
      arm();
    });
    arm();
  }

  document.addEventListener("DOMContentLoaded", function () {
    confirmForms();
    autoRefresh();
    if (typeof uPlot !== "undefined") document.querySelectorAll(".chart").forEach(draw);
  });
})();
