/* Builds Chart.js charts from the precomputed series in #report-data. No maths beyond
   mapping arrays to points: every number was computed on the Python side. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var css = getComputedStyle(document.documentElement);
  var STAGE_COLORS = [0, 1, 2, 3, 4].map(function (i) { return css.getPropertyValue("--s" + i).trim(); });
  var COMPONENT_COLORS = { db: "#4e79a7", cache: "#76b7b2", hash: "#f28e2b", app: "#b5aca6" };
  var EXTRA_COLORS = ["#59a14f", "#af7aa1", "#edc948", "#9c755f"];
  var overview = data.overview;
  var stages = overview.stages;

  Chart.defaults.animation = false;
  Chart.defaults.font.size = 11;
  Chart.defaults.color = "#4b5563";
  Chart.defaults.plugins.legend.labels.boxWidth = 10;
  Chart.defaults.plugins.legend.labels.boxHeight = 10;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.elements.point.radius = 0;
  Chart.defaults.elements.line.borderWidth = 1.6;

  function ordered(obj) { return stages.filter(function (s) { return obj[s] !== undefined; }); }
  function color(stage) { return STAGE_COLORS[stages.indexOf(stage) % STAGE_COLORS.length]; }
  function points(xs, ys) {
    var out = [];
    for (var i = 0; i < xs.length; i++) {
      if (ys[i] !== null && ys[i] !== undefined) out.push({ x: xs[i], y: ys[i] });
    }
    return out;
  }
  function positive(pts) { return pts.filter(function (p) { return p.y > 0; }); }
  function ms(v) { return v >= 1000 ? (v / 1000).toPrecision(3) + " s" : (+v.toPrecision(3)) + " ms"; }
  function pct(q) { var p = 100 * (1 - 1 / q); return (+p.toFixed(3)) + "%"; }
  function logMsAxis(title) {
    return { type: "logarithmic", title: { display: !!title, text: title },
             ticks: { callback: function (v) { var s = String(v)[0]; return (s === "1" || s === "5" || s === "2") ? ms(v) : ""; } } };
  }
  function empty(canvas, text) {
    var box = canvas.parentNode;
    box.innerHTML = '<p class="muted" style="padding-top:90px;text-align:center"></p>';
    box.firstChild.textContent = text;
  }
  var charts = {};
  function make(canvas, config) {
    var chart = new Chart(canvas, config);
    charts[canvas.id || canvas.dataset.chart + "-" + canvas.dataset.testId] = chart;
    return chart;
  }
  window.minigramCharts = charts;

  function timeseriesChart(canvas, byStage, field, yAxis, withUsers) {
    var sets = [];
    ordered(byStage).forEach(function (stage) {
      var ts = byStage[stage];
      var pts = points(ts.t, ts[field]);
      if (yAxis.type === "logarithmic") pts = positive(pts);
      sets.push({ label: "stage " + stage, data: pts, borderColor: color(stage),
                  backgroundColor: color(stage), yAxisID: "y" });
      if (withUsers) {
        sets.push({ label: "users · " + stage, data: points(ts.t, ts.users), borderColor: color(stage),
                    borderDash: [4, 3], borderWidth: 1, yAxisID: "y2", backgroundColor: "transparent" });
      }
    });
    if (!sets.some(function (s) { return s.data.length; })) return empty(canvas, "no timeseries recorded");
    var scales = { x: { type: "linear", title: { display: true, text: "seconds" } }, y: yAxis };
    if (withUsers) scales.y2 = { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
                                 title: { display: true, text: "users" } };
    make(canvas, { type: "line", data: { datasets: sets },
      options: { parsing: false, normalized: true, scales: scales, interaction: { mode: "nearest", intersect: false },
                 plugins: { legend: { labels: { filter: function (i) { return i.text.indexOf("users") !== 0; } } } } } });
  }

  function distributionChart(canvas, byStage) {
    var sets = ordered(byStage).filter(function (s) { return byStage[s].length; }).map(function (stage) {
      return { label: "stage " + stage, data: positive(byStage[stage].map(function (p) { return { x: p[0], y: p[1] }; })),
               borderColor: color(stage), backgroundColor: color(stage), stepped: false };
    });
    if (!sets.length) return empty(canvas, "no latency histogram recorded");
    make(canvas, { type: "line", data: { datasets: sets },
      options: { parsing: false, scales: {
        x: { type: "logarithmic", min: 1, title: { display: true, text: "percentile" },
             ticks: { callback: function (v) { return /^10*$/.test(String(v)) ? pct(v) : ""; } } },
        y: logMsAxis("latency") },
        plugins: { tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": p" + pct(c.parsed.x).replace("%", "") + " = " + ms(c.parsed.y); } } } } } });
  }

  function errorsChart(canvas) {
    var byStage = overview.errors_vs_users;
    var sets = ordered(byStage).map(function (stage) {
      return { label: "stage " + stage, borderColor: color(stage), backgroundColor: color(stage), pointRadius: 2,
               data: byStage[stage].map(function (p) { return { x: p.users, y: 100 * p.error_rate }; }) };
    });
    if (!sets.length) return empty(canvas, "no stress or breaking-point run in this report");
    make(canvas, { type: "line", data: { datasets: sets },
      options: { parsing: false, scales: { x: { type: "linear", title: { display: true, text: "active users" } },
                 y: { beginAtZero: true, suggestedMax: 10, title: { display: true, text: "errors %" } } } } });
  }

  function actionsChart(canvas) {
    var a = overview.actions;
    if (!a.labels.length) return empty(canvas, "no per-action statistics");
    var sets = ordered(a.p95).map(function (stage) {
      return { label: "stage " + stage, data: a.p95[stage], backgroundColor: color(stage) };
    });
    make(canvas, { type: "bar", data: { labels: a.labels, datasets: sets },
      options: { scales: { y: logMsAxis("p95") } } });
  }

  function timingChart(canvas) {
    var st = overview.server_timing;
    var labels = [], comps = [];
    var actions = [];
    ordered(st).forEach(function (stage) {
      Object.keys(st[stage]).forEach(function (action) {
        if (actions.indexOf(action) < 0) actions.push(action);
        Object.keys(st[stage][action]).forEach(function (c) { if (comps.indexOf(c) < 0) comps.push(c); });
      });
    });
    if (!actions.length) return empty(canvas, "no Server-Timing headers recorded");
    var rows = [];
    actions.forEach(function (action) {
      stages.forEach(function (stage) {
        if (st[stage] && st[stage][action]) { rows.push([stage, action]); labels.push(action + " · " + stage); }
      });
    });
    var order = ["db", "cache", "hash", "app"];
    comps.sort(function (x, y) { var i = order.indexOf(x), j = order.indexOf(y); return (i < 0 ? 9 : i) - (j < 0 ? 9 : j) || (x < y ? -1 : 1); });
    var sets = comps.map(function (c, k) {
      return { label: c, backgroundColor: COMPONENT_COLORS[c] || EXTRA_COLORS[k % EXTRA_COLORS.length],
               data: rows.map(function (r) { return st[r[0]][r[1]][c] || 0; }) };
    });
    canvas.parentNode.style.height = Math.max(250, 40 + 15 * rows.length) + "px";
    make(canvas, { type: "bar", data: { labels: labels, datasets: sets },
      options: { indexAxis: "y", scales: { x: { stacked: true, title: { display: true, text: "ms per request" } },
                 y: { stacked: true, ticks: { autoSkip: false, font: { size: 10 } } } },
                 plugins: { tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + ms(c.parsed.x); } } } } } });
  }

  timeseriesChart(document.getElementById("chart-throughput"), overview.timeseries, "rps",
                  { beginAtZero: true, title: { display: true, text: "req/s" } }, true);
  timeseriesChart(document.getElementById("chart-p95"), overview.timeseries, "p95", logMsAxis(""), false);
  distributionChart(document.getElementById("chart-distribution"), overview.distribution);
  errorsChart(document.getElementById("chart-errors"));
  actionsChart(document.getElementById("chart-actions"));
  timingChart(document.getElementById("chart-timing"));

  /* per-test charts are built when a row is first opened: 150 charts up front would be slow */
  function drawDetail(body) {
    body.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      canvas.dataset.drawn = "1";
      var t = data.tests[canvas.dataset.testId];
      var stage = t.title.split(" · stage ")[1];
      var one = {}; one[stage] = t.timeseries;
      if (canvas.dataset.chart === "timeseries") {
        timeseriesChart(canvas, one, "rps", { beginAtZero: true, title: { display: true, text: "req/s" } }, true);
      } else {
        var d = {}; d[stage] = t.distribution;
        distributionChart(canvas, d);
      }
    });
  }
  document.querySelectorAll("tbody.test .summary-row").forEach(function (row) {
    function toggle() {
      var detail = row.nextElementSibling;
      var open = detail.hidden;
      detail.hidden = !open;
      row.setAttribute("aria-expanded", String(open));
      if (open) drawDetail(detail);
    }
    row.addEventListener("click", toggle);
    row.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } });
  });
  var switcher = document.getElementById("stage-comparison-test");
  if (switcher) {
    switcher.addEventListener("change", function () {
      document.querySelectorAll(".stage-comparison").forEach(function (div) {
        div.hidden = div.dataset.group !== switcher.value;
      });
    });
  }
  document.body.dataset.chartsReady = "1";
})();
