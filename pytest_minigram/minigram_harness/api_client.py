"""A functional Minigram API client on requests, for ordinary correctness tests."""

from __future__ import annotations

from typing import Any

import requests


class ApiError(AssertionError):
    """An unexpected HTTP status; carries the response for inspection."""

    def __init__(self, response: requests.Response, expected: tuple[int, ...]) -> None:
        self.response = response
        self.status = response.status_code
        req = response.request
        super().__init__(f"{req.method} {req.path_url} -> {response.status_code} "
                         f"(expected {', '.join(map(str, expected))}): {response.text[:300]}")


class MinigramClient:
    """Methods for every endpoint. Each checks the status it expects and returns the JSON.

    Pass ``expect=`` to assert another status (for example ``expect=409``), or use
    ``request()`` for the raw response.
    """

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.token: str | None = None

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> MinigramClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        kwargs.setdefault("timeout", self.timeout)
        return self.session.request(method, self.base_url + path, headers=headers, **kwargs)

    def _call(self, method: str, path: str, expect: int | tuple[int, ...], **kwargs: Any) -> Any:
        expected = (expect,) if isinstance(expect, int) else tuple(expect)
        resp = self.request(method, path, **kwargs)
        if resp.status_code not in expected:
            raise ApiError(resp, expected)
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.content

    # users and sessions
    def register(self, username: str, password: str, expect: int | tuple[int, ...] = 201) -> Any:
        return self._call("POST", "/api/register", expect,
                          json={"username": username, "password": password})

    def login(self, username: str, password: str, expect: int | tuple[int, ...] = 200) -> Any:
        body = self._call("POST", "/api/login", expect,
                          json={"username": username, "password": password})
        if isinstance(body, dict) and "token" in body:
            self.token = body["token"]
        return body

    def logout(self, expect: int | tuple[int, ...] = (200, 204)) -> Any:
        body = self._call("POST", "/api/logout", expect)
        self.token = None
        return body

    def profile(self, username: str, expect: int | tuple[int, ...] = 200) -> Any:
        return self._call("GET", f"/api/users/{username}", expect)

    def follow(self, username: str, expect: int | tuple[int, ...] = 200) -> Any:
        return self._call("POST", f"/api/users/{username}/follow", expect)

    def unfollow(self, username: str, expect: int | tuple[int, ...] = 200) -> Any:
        return self._call("DELETE", f"/api/users/{username}/follow", expect)

    # photos
    def upload(self, content: bytes, filename: str = "photo.png", caption: str | None = None,
               content_type: str = "application/octet-stream",
               expect: int | tuple[int, ...] = 201) -> Any:
        data = {"caption": caption} if caption is not None else None
        return self._call("POST", "/api/photos", expect, data=data,
                          files={"file": (filename, content, content_type)})

    def photo(self, photo_id: int, expect: int | tuple[int, ...] = 200) -> Any:
        return self._call("GET", f"/api/photos/{photo_id}", expect)

    def delete_photo(self, photo_id: int, expect: int | tuple[int, ...] = (200, 204)) -> Any:
        return self._call("DELETE", f"/api/photos/{photo_id}", expect)

    def media(self, url_or_name: str, expect: int | tuple[int, ...] = 200) -> Any:
        path = url_or_name if url_or_name.startswith("/") else f"/media/{url_or_name}"
        return self._call("GET", path, expect)

    def like(self, photo_id: int, expect: int | tuple[int, ...] = 200) -> Any:
        return self._call("POST", f"/api/photos/{photo_id}/like", expect)

    def unlike(self, photo_id: int, expect: int | tuple[int, ...] = 200) -> Any:
        return self._call("DELETE", f"/api/photos/{photo_id}/like", expect)

    def feed(self, limit: int | None = None, cursor: str | None = None,
             expect: int | tuple[int, ...] = 200) -> Any:
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        return self._call("GET", "/api/feed", expect, params=params)

    # operations
    def healthz(self, expect: int | tuple[int, ...] = 200) -> Any:
        return self._call("GET", "/healthz", expect)

    def metrics(self) -> str:
        resp = self.request("GET", "/metrics")
        if resp.status_code != 200:
            raise ApiError(resp, (200,))
        return resp.text
