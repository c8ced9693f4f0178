"""No JSON body is a 500: nested past the parser's recursion limit, huge, or malformed.

The property test throws generated documents at every operation that takes a JSON body
(from the OpenAPI schema) and at every other POST and DELETE, with and without a token, on
every stage, in-process (Starlette's TestClient, server exceptions turned into 500s).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigram.app import ROUTES, create_app
from minigram.openapi import build_schema

PASSWORD = "password123"


def _operations() -> list[tuple[str, str]]:
    """(method, path) of the operations a body can be sent to, path parameters filled in."""
    found = []
    for path, operations in build_schema(ROUTES)["paths"].items():
        for method, op in operations.items():
            takes_json = "application/json" in op.get("requestBody", {}).get("content", {})
            if takes_json or method in ("post", "delete"):
                found.append((method.upper(), path.replace("{id}", "1")
                              .replace("{name}", "someone_else")))
    return found


OPERATIONS = _operations()


def test_the_operations_include_every_json_endpoint() -> None:
    assert {("POST", "/api/register"), ("POST", "/api/login")} <= set(OPERATIONS)
    assert len(OPERATIONS) >= 9


def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "open":  # never closed, as in "[" * 30000
        return b"[" * depth
    return b'{"username":' + b"[" * depth + b"]" * depth + b',"password":"x"}'


nested = st.builds(
    _nested, st.integers(1, 200_000), st.sampled_from(["array", "object", "open", "field"])
)
huge = st.builds(
    lambda n, c: json.dumps({"username": c * n, "password": c * n}).encode(),
    st.integers(1_000, 200_000),
    st.sampled_from(["a", "\u00e9", "\\", '"', "\U0001f600"]),
)
malformed = st.one_of(
    st.binary(max_size=2048),
    st.sampled_from([
        b"", b"{", b"}", b"[", b'{"username":', b"null", b"NaN", b"-Infinity", b"1" * 5000,
        b'{"username": "\\ud800", "password": "\\udfff"}', b'{"username": "a\\u0000b"}',
        b"\xff\xfe{}", b'{"username": "x", "username": ["y"]}', b'{"a": 1e999999}',
        b"\xef\xbb\xbf{}", b'{"username": 1' + b"0" * 5000 + b"}",
    ]),
    st.builds(lambda doc, cut: doc[:cut],
              st.sampled_from([b'{"username": "alice", "password": "password123"}']),
              st.integers(0, 40)),
)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10),
                                                                      children, max_size=5),
    max_leaves=30,
)
shaped = st.builds(
    lambda username, password, extra: json.dumps(
        {"username": username, "password": password, **extra}, allow_nan=True
    ).encode(),
    values | st.text(max_size=300),
    values | st.text(max_size=300),
    st.dictionaries(st.text(max_size=10), values, max_size=3),
)
documents = st.one_of(nested, huge, malformed, shaped)
content_types = st.sampled_from(
    ["application/json", "application/json", "application/vnd.x+json", "text/plain", ""]
)


@pytest.fixture(params=["1", "1.5", "2"])
def client(request: pytest.FixtureRequest, app_settings_factory: Callable[..., Any],
           test_client_factory: Callable[..., Any]) -> Any:
    settings_ = app_settings_factory(str(request.param), login_user_limit=0, login_ip_limit=0)
    return test_client_factory(create_app(settings_), raise_server_exceptions=False)


def _assert_client_error_or_success(response: Any, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "detail"}, (what, body)


def test_a_deeply_nested_body_is_a_400(client: Any) -> None:
    for body in (b"[" * 30000, b"{" * 30000, _nested(30_000, "field")):
        response = client.post("/api/login", content=body,
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text[:300]
        assert response.json()["error"] == "invalid_json"


def test_no_generated_body_is_a_server_error(client: Any) -> None:
    client.post("/api/register", json={"username": "fuzz_owner", "password": PASSWORD})
    token = client.post(
        "/api/login", json={"username": "fuzz_owner", "password": PASSWORD}
    ).json()["token"]

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(operation=st.sampled_from(OPERATIONS), body=documents, kind=content_types,
           authenticated=st.booleans())
    def check(operation: tuple[str, str], body: bytes, kind: str, authenticated: bool) -> None:
        method, path = operation
        headers = {"Content-Type": kind} if kind else {}
        if authenticated and not path.startswith("/api/logout"):  # keep the token alive
            headers["Authorization"] = f"Bearer {token}"
        response = client.request(method, path, content=body, headers=headers)
        _assert_client_error_or_success(response, f"{method} {path} {body[:60]!r}")

    check()
