"""The live page: the running load and the finished ones, charts updated every second over
server-sent events, and a button that stops the running load.

Served from a stdlib ``ThreadingHTTPServer`` in a thread of its own. The page is one
self-contained HTML document (Chart.js, the report's copy, inlined): no request leaves its
origin. ``POST /stop`` must carry the per-session token embedded in the page (header
``X-Minigram-Token``) and, when the browser sends one, an ``Origin`` equal to the page's, so
another site cannot stop a load.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from pytest_minigram.live.state import LiveState

__all__ = ["LivePage", "render_page"]

SSE_EVERY = 1.0


def _asset(package: str, *parts: str) -> str:
    return resources.files(package).joinpath(*parts).read_text("utf-8")


def render_page(token: str) -> str:
    chart = _asset("pytest_minigram.report", "vendor", "chart.umd.min.js")
    chart = "\n".join(ln for ln in chart.splitlines() if not ln.startswith("//# sourceMappingURL"))
    css = _asset("pytest_minigram.report", "templates", "report.css")
    if "</script" in chart.lower():
        raise ValueError("inlined script contains '</script'")
    return PAGE.replace("{{css}}", css).replace("{{token}}", token).replace("{{chart}}", chart)


class LivePage:
    def __init__(self, state: LiveState, stop: Callable[[str], bool], host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.state = state
        self.stop = stop
        self.token = secrets.token_urlsafe(24)
        self.host, self.port = host, port
        self.closed = threading.Event()
        self._html = render_page(self.token).encode()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> LivePage:
        page = self

        class Handler(_Handler):
            live = page

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="minigram-live-page",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.closed.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Handler(BaseHTTPRequestHandler):
    live: LivePage
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'none'; script-src "
                         "'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?")[0]
        if path == "/":
            self._send(200, self.live._html, "text/html; charset=utf-8")
        elif path == "/state":
            self._send(200, json.dumps(self.live.state.snapshot()).encode(),
                       "application/json")
        elif path == "/events":
            self._events()
        else:
            self._send(404, b"not found", "text/plain")

    def _events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            while not self.live.closed.is_set():
                data = json.dumps(self.live.state.snapshot(), allow_nan=False)
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()
                if self.live.closed.wait(SSE_EVERY):
                    return
        except (BrokenPipeError, ConnectionResetError):
            return

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/stop":
            self._send(404, b"not found", "text/plain")
            return
        token = self.headers.get("X-Minigram-Token", "")
        origin = self.headers.get("Origin")
        host = self.headers.get("Host", "")
        if not hmac.compare_digest(token, self.live.token) or (
                origin is not None and origin != f"http://{host}"):
            self._send(403, b'{"error": "bad token or origin"}', "application/json")
            return
        try:
            length = min(int(self.headers.get("Content-Length", "0")), 100_000)
            test = str(json.loads(self.rfile.read(length) or b"{}").get("test", ""))
        except (ValueError, AttributeError):
            self._send(400, b'{"error": "expected {\\"test\\": ID}"}', "application/json")
            return
        stopped = self.live.stop(test)
        self._send(200 if stopped else 409, json.dumps({"stopped": stopped}).encode(),
                   "application/json")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>minigram live</title>
<style>{{css}}
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 12px; }
.box { position: relative; height: 220px; }
#line { font: 12px ui-monospace, monospace; }
button.stop { background: var(--bad); color: #fff; border: 0; border-radius: 6px;
  padding: 6px 14px; font-weight: 600; cursor: pointer; }
</style></head>
<body data-token="{{token}}">
<header class="top"><div><h1>minigram live</h1>
<p class="meta" id="status">waiting for a load</p></div></header>
<main>
<section class="card" id="running"><h2 id="test">no load running</h2>
<p id="line" class="sub"></p>
<button class="stop" id="stop" hidden>stop this test</button>
<div class="charts">
<div class="box"><canvas id="chart-rps"></canvas></div>
<div class="box"><canvas id="chart-latency"></canvas></div>
<div class="box"><canvas id="chart-errors"></canvas></div>
<div class="box"><canvas id="chart-users"></canvas></div>
</div></section>
<section class="card"><h2>finished</h2><table><thead><tr><th>test</th><th>outcome</th>
<th class="num">requests</th><th class="num">seconds</th></tr></thead>
<tbody id="finished"></tbody></table></section>
</main>
<script>{{chart}}</script>
<script>
(function () {
  "use strict";
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.elements.point.radius = 0;
  var token = document.body.dataset.token;
  var charts = {}, current = null, updates = 0;
  function chart(id, label, sets) {
    charts[id] = new Chart(document.getElementById(id), { type: "line",
      data: { datasets: sets.map(function (s) { return { label: s[0], borderColor: s[1], data: [] }; }) },
      options: { parsing: false, scales: { x: { type: "linear", title: { display: true, text: "seconds" } },
                 y: { beginAtZero: true, title: { display: true, text: label } } } } });
  }
  chart("chart-rps", "req/s", [["req/s", "#00798c"]]);
  chart("chart-latency", "ms", [["p50", "#30638e"], ["p95", "#d1495b"]]);
  chart("chart-errors", "errors/s", [["errors", "#b42318"]]);
  chart("chart-users", "users", [["users", "#e89f2b"]]);
  function pts(s, key, scale) {
    var out = [];
    for (var i = 0; i < s.t.length; i++) if (s[key][i] !== null) out.push({ x: s.t[i], y: s[key][i] * (scale || 1) });
    return out;
  }
  function draw(load) {
    var s = load.series;
    charts["chart-rps"].data.datasets[0].data = pts(s, "requests");
    charts["chart-latency"].data.datasets[0].data = pts(s, "p50", 1000);
    charts["chart-latency"].data.datasets[1].data = pts(s, "p95", 1000);
    charts["chart-errors"].data.datasets[0].data = pts(s, "errors");
    charts["chart-users"].data.datasets[0].data = pts(s, "users");
    Object.keys(charts).forEach(function (k) { charts[k].update(); });
  }
  function show(state) {
    var run = state.running[state.running.length - 1];
    var stop = document.getElementById("stop");
    if (run) {
      current = run;
      document.getElementById("test").textContent = run.test + (run.stage ? " [" + run.stage + "]" : "");
      document.getElementById("line").textContent = run.line;
      document.getElementById("status").textContent = "running: " + run.test;
      stop.hidden = false;
      draw(run);
    } else {
      stop.hidden = true;
      document.getElementById("status").textContent = "no load running";
      var last = state.finished[state.finished.length - 1];
      if (last && current && last.test === current.test) {
        document.getElementById("line").textContent = last.line;
        draw(last);
      }
    }
    var body = document.getElementById("finished");
    body.textContent = "";
    state.finished.forEach(function (f) {
      var tr = document.createElement("tr");
      tr.dataset.outcome = f.outcome;
      [f.test, f.outcome, String(f.requests), f.elapsed.toFixed(1)].forEach(function (v, i) {
        var td = document.createElement("td"); td.textContent = v; if (i > 1) td.className = "num"; tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    updates += 1;
    document.body.dataset.updates = String(updates);
  }
  document.getElementById("stop").addEventListener("click", function () {
    if (!current) return;
    fetch("/stop", { method: "POST", headers: { "Content-Type": "application/json", "X-Minigram-Token": token },
                     body: JSON.stringify({ test: current.test }) })
      .then(function (r) { document.body.dataset.stopStatus = String(r.status); });
  });
  var events = new EventSource("/events");
  events.onmessage = function (e) { show(JSON.parse(e.data)); };
  window.minigramLive = charts;
})();
</script></body></html>
"""
