"""Text of the conftest that the pytester sessions use: a tiny HTTP target in a thread."""

TARGET_CONFTEST = r'''
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pytest_minigram.load import Journey


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(0.02)
        body = json.dumps({"ok": True}).encode()
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the load generator closes keep-alive connections when a run ends


@pytest.fixture(scope="session")
def tiny_server():
    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def minigram_target(tiny_server):
    return tiny_server


async def ping(user):
    await user.get("/ping", name="ping")


async def slow(user):
    await user.get("/slow", name="slow")


async def failing(user):
    await user.get("/fail", name="fail")


def pytest_minigram_add_journeys(config):
    return [Journey("ping", ping), Journey("slow", slow), Journey("failing", failing)]
'''
