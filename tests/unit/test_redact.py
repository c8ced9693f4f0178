"""Passwords in URLs and token-like query values never leave the process."""

from __future__ import annotations

import pytest

from pytest_minigram.redact import redact_text, redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://user:SECRET@db:5432/x", "postgresql://user:***@db:5432/x"),
    ("https://bob:p%40ss@api.example.com/", "https://bob:***@api.example.com/"),
    ("https://api.example.com/?token=abc&page=2", "https://api.example.com/?token=***&page=2"),
    ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("postgresql://user@db/x", "postgresql://user@db/x"),
    (".minigram", ".minigram"),
    ("postgresql://u:ab/cd@host/db", "postgresql://u:***@host/db"),
    ("postgresql://u:p@ss@host:5432/db", "postgresql://u:***@host:5432/db"),
    ("https://h.test/cb#access_token=T0K&x=1", "https://h.test/cb#access_token=***&x=1"),
    ("https://s3.test/o?X-Amz-Signature=abc&X-Amz-Date=1",
     "https://s3.test/o?X-Amz-Signature=***&X-Amz-Date=1"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_every_url_inside() -> None:
    text = ("cannot open postgresql://u:S3CRET@h/db, then tried "
            "https://x.test/a?api_key=K3Y and sqlite:///ok.db")
    out = redact_text(text)
    assert "S3CRET" not in out and "K3Y" not in out
    assert "postgresql://u:***@h/db" in out and "sqlite:///ok.db" in out
