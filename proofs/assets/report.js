// soak report: turns the static SVG charts into interactive uPlot charts from the JSON in
// #soak-data. Everything else on the page is static HTML. No network access of any kind.
(function () {
  "use strict";
  var body = document.body;
  function fail(message) {
    var list = body.getAttribute("data-report-errors");
    body.setAttribute("data-report-errors", (list ? list + "; " : "") + message);
  }
  window.addEventListener("error", function (e) { fail(String(e.message)); });
  if (typeof uPlot !== "function") { fail("uPlot did not load"); return; }

  var data = JSON.parse(document.getElementById("soak-data").textContent);
  var utc = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); };
  var SHADE = { fault: "rgba(207,34,46,0.16)", restart: "rgba(191,135,0,0.30)", gap: "rgba(110,119,129,0.22)" };
  var VERDICT = { "GO": "rgba(26,127,55,0.07)", "UNKNOWN": "rgba(154,103,0,0.09)", "NO-GO": "rgba(207,34,46,0.08)" };

  // Window indices are whole numbers: no fractional ticks.
  var WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];
  function colour(i) { return "hsl(" + Math.round((i * 137.508) % 360) + ",65%,42%)"; }
  function width(el) { return Math.max(320, Math.floor(el.getBoundingClientRect().width || 900)); }

  // Draws window verdict tints and fault / restart / gap bands under the series.
  function bands(list, windows) {
    return {
      hooks: {
        drawClear: [function (u) {
          var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
          var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
          function fill(from, to, style) {
            var a = Math.max(left, u.valToPos(from / 1e3, "x", true));
            var b = Math.min(right, u.valToPos(to / 1e3, "x", true));
            if (!(b >= left && a <= right)) { return; }
            ctx.fillStyle = style;
            ctx.fillRect(a, top, Math.max(b - a, 2), height);
          }
          ctx.save();
          windows.forEach(function (w) { if (VERDICT[w.verdict]) { fill(w.from, w.to, VERDICT[w.verdict]); } });
          list.forEach(function (b) { fill(b.from, b.to, SHADE[b.kind] || SHADE.gap); });
          ctx.restore();
        }]
      }
    };
  }

  function plot(el, opts, columns) {
    el.textContent = "";
    var chart = new uPlot(opts, columns, el);
    el.parentNode.classList.add("rendered");
    return chart;
  }

  var charts = 0;
  var xs = data.x.map(function (ms) { return ms / 1e3; });
  var many = data.nodes.length > 24;
  data.charts.forEach(function (c, i) {
    var el = document.querySelector('[data-chart="' + i + '"]');
    if (!el || xs.length === 0) { return; }
    var series = [{ label: "time (UTC)" }].concat(data.nodes.map(function (n, j) {
      return { label: n, stroke: colour(j), width: 1, spanGaps: false, points: { show: xs.length < 60 } };
    }));
    plot(el, {
      width: width(el), height: 220, tzDate: utc, series: series,
      legend: { show: !many, live: true },
      scales: { x: { time: true } },
      axes: [{}, { label: c.unit, size: 60 }],
      plugins: [bands(data.bands, data.windows)]
    }, [xs].concat(c.values));
    charts += 1;
  });

  var lat = document.querySelector("[data-latency]");
  if (lat && data.latency.length > 0) {
    var idx = data.latency.map(function (l) { return l.index; });
    var col = function (k) { return data.latency.map(function (l) { return l[k] == null ? null : l[k] / 1e3; }); };
    var names = ["min", "p50", "p90", "p99", "max"], tones = ["#8c959f", "#1a7f37", "#9a6700", "#cf222e", "#24292f"];
    plot(lat, {
      width: width(lat), height: 220,
      series: [{ label: "window" }].concat(names.map(function (n, j) { return { label: n, stroke: tones[j], width: 1.5 }; })),
      scales: { x: { time: false } },
      axes: [{ label: "window", incrs: WHOLE }, { label: "ms", size: 60 }]
    }, [idx].concat(names.map(col)));
    charts += 1;
  }

  [["ratio", data.fanout.ratio], ["p99", data.fanout.p99_ms]].forEach(function (pair) {
    var el = document.querySelector('[data-fanout="' + pair[0] + '"]');
    if (!el || data.fanout.windows.length === 0) { return; }
    plot(el, {
      width: width(el), height: 200,
      series: [{ label: "window" }].concat(data.fanout.subscribers.map(function (n, j) {
        return { label: n, stroke: colour(j), width: 1 };
      })),
      legend: { show: data.fanout.subscribers.length <= 24 },
      scales: { x: { time: false } },
      axes: [{ label: "window", incrs: WHOLE }, { label: pair[0] === "ratio" ? "ratio" : "ms", size: 60 }]
    }, [data.fanout.windows].concat(pair[1]));
    charts += 1;
  });

  body.setAttribute("data-charts", String(charts));
})();
