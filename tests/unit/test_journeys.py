"""Minigram's journeys against a small fake of the API, checking the requests they send."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pytest_minigram.load import Closed, Journey, VirtualUser, run
from pytest_minigram.load.cli import main as cli_main
from pytest_minigram.load.registry import available_journeys, get_journey, register_journey


@dataclass
class FakeMinigram:
    users: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    photos: list[dict[str, Any]] = field(default_factory=list)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)
    uploads: list[tuple[str, bytes, str | None]] = field(default_factory=list)

    def app(self) -> Starlette:
        def who(request: Request) -> str | None:
            auth = request.headers.get("authorization", "")
            return self.tokens.get(auth.removeprefix("Bearer "))

        async def register(request: Request) -> Response:
            body = await request.json()
            if body["username"] in self.users:
                return JSONResponse({"error": "taken"}, 409)
            self.users[body["username"]] = body["password"]
            return JSONResponse({"username": body["username"]}, 201)

        async def login(request: Request) -> Response:
            body = await request.json()
            if self.users.get(body["username"]) != body["password"]:
                return JSONResponse({"error": "bad credentials"}, 401)
            token = f"tok{len(self.tokens)}"
            self.tokens[token] = body["username"]
            return JSONResponse({"token": token, "user": {"username": body["username"]}})

        async def authed(request: Request) -> Response:
            if who(request) is None:
                return JSONResponse({"error": "unauthorized"}, 401)
            path = request.url.path
            if path == "/api/feed":
                limit = int(request.query_params["limit"])
                start = int(request.query_params.get("cursor", "0"))
                page = self.photos[start:start + limit]
                nxt = str(start + limit) if start + limit < len(self.photos) else None
                return JSONResponse({"photos": page, "next_cursor": nxt})
            if path == "/api/photos" and request.method == "POST":
                async with request.form() as form:
                    upload = form["file"]
                    assert not isinstance(upload, str)
                    data = await upload.read()
                    caption = form.get("caption")
                self.uploads.append((upload.filename or "", data,
                                     caption if isinstance(caption, str) else None))
                photo = {"id": len(self.photos) + 1, "likes": 0, "liked": False}
                self.photos.append(photo)
                return JSONResponse(photo, 201)
            return JSONResponse({"ok": True})

        async def public(request: Request) -> Response:
            return JSONResponse({"username": request.path_params.get("name", "")})

        def logged(endpoint: Any) -> Any:
            async def wrapper(request: Request) -> Response:
                self.log.append((request.method, request.url.path,
                                 request.headers.get("authorization")))
                response: Response = await endpoint(request)
                return response
            return wrapper

        return Starlette(routes=[
            Route("/api/register", logged(register), methods=["POST"]),
            Route("/api/login", logged(login), methods=["POST"]),
            Route("/api/logout", logged(authed), methods=["POST"]),
            Route("/api/feed", logged(authed)),
            Route("/api/photos", logged(authed), methods=["POST"]),
            Route("/api/photos/{id:int}", logged(authed)),
            Route("/api/photos/{id:int}/like", logged(authed), methods=["POST", "DELETE"]),
            Route("/api/users/{name}/follow", logged(authed), methods=["POST", "DELETE"]),
            Route("/api/users/{name}", logged(public)),
        ])


@pytest.fixture
def fake() -> Iterator[tuple[FakeMinigram, str]]:
    state = FakeMinigram()
    for i in range(10):
        state.users[f"seed_user_{i}"] = "seedpass123"
    state.photos = [{"id": i, "likes": 0, "liked": False} for i in range(1, 46)]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(state.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _run(name: str, url: str, iterations: int = 2, users: int = 2) -> Any:
    return run(Closed(users=users, duration=20.0, iterations=iterations), get_journey(name), url,
               params={"seed_users": 10})


def test_registry_lists_the_builtins() -> None:
    assert set(available_journeys()) >= {"realistic", "browse", "write", "register", "login",
                                         "feed", "like", "follow", "upload", "profile"}
    with pytest.raises(KeyError, match="unknown journey 'nope'; available: browse"):
        get_journey("nope")
    custom = register_journey(Journey("custom-test", lambda user: _noop(user)))
    assert get_journey("custom-test") is custom
    with pytest.raises(TypeError):
        register_journey("realistic")  # type: ignore[arg-type]


async def _noop(user: VirtualUser) -> None:
    return None


def test_realistic(fake: tuple[FakeMinigram, str]) -> None:
    state, url = fake
    result = _run("realistic", url)
    assert result.errors == {} and result.iterations == 4
    assert set(result.actions) == {"register", "login", "follow", "feed", "like", "upload",
                                   "profile", "logout"}
    assert result.actions["register"].count == 4 and result.actions["feed"].count == 8
    assert 9 <= result.count / result.iterations <= 11
    new_users = [u for u in state.users if not u.startswith("seed_user_")]
    assert len(set(new_users)) == 4
    # everything after login carries the token, registration and login do not
    for method, path, auth in state.log:
        if path in ("/api/register", "/api/login"):
            assert auth is None
        elif not path.startswith("/api/users/lt"):
            assert auth and auth.startswith("Bearer tok"), (method, path)
    follows = [p for m, p, _ in state.log if p.endswith("/follow")]
    assert all(p.startswith("/api/users/seed_user_") for p in follows)
    filename, data, caption = state.uploads[0]
    assert filename == "photo.png" and data.startswith(b"\x89PNG\r\n\x1a\n")
    assert caption and caption.startswith("load test")


def test_browse_pages_with_the_cursor(fake: tuple[FakeMinigram, str]) -> None:
    state, url = fake
    result = _run("browse", url, iterations=1, users=1)
    assert result.errors == {}
    feeds = [p for m, p, _ in state.log if p == "/api/feed"]
    assert len(feeds) == 3  # 45 photos, 20 a page
    assert result.actions["login"].count == 1  # on_start only
    assert result.actions["photo"].count == 2 and result.actions["profile"].count == 1


def test_write(fake: tuple[FakeMinigram, str]) -> None:
    state, url = fake
    result = _run("write", url)
    assert result.errors == {}
    assert {"like", "unlike", "upload"} <= set(result.actions)
    methods = {(m, p.rsplit("/", 1)[-1]) for m, p, _ in state.log}
    assert ("DELETE", "like") in methods and ("POST", "like") in methods


@pytest.mark.parametrize(("name", "action"), [
    ("register", "register"), ("login", "login"), ("feed", "feed"), ("like", "like"),
    ("follow", "follow"), ("upload", "upload"), ("profile", "profile"),
])
def test_single_endpoint_journeys(fake: tuple[FakeMinigram, str], name: str,
                                  action: str) -> None:
    _, url = fake
    result = _run(name, url, iterations=3, users=1)
    assert result.errors == {}
    assert result.actions[action].count == 3


def test_login_failure_is_an_error_not_a_crash(fake: tuple[FakeMinigram, str]) -> None:
    state, url = fake
    state.users.clear()
    result = _run("feed", url, iterations=2, users=1)
    assert set(result.errors) == {"status:401"}
    assert "feed" not in result.actions  # on_start failed, the iteration never ran


def test_cli_runs_a_journey(fake: tuple[FakeMinigram, str], tmp_path: Any,
                            capsys: pytest.CaptureFixture[str]) -> None:
    _, url = fake
    out = tmp_path / "r.json"
    code = cli_main([url, "-j", "profile", "-u", "2", "--iterations", "3", "-q",
                     "--param", "seed_users=10", "--label", "stage=2", "-o", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "profile" in text and "TOTAL" in text and "apdex" in text
    import json

    data = json.loads(out.read_text())
    assert data["labels"]["stage"] == "2" and data["actions"]["profile"]["count"] == 6
    with pytest.raises(SystemExit):
        cli_main([url, "-j", "nope"])
