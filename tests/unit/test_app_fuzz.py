"""Schemathesis against Minigram's own OpenAPI schema, on stages 1 and 2, over real HTTP to a
real ``minigram serve`` (two uvicorn workers on stage 2).

Every operation is fuzzed in four ways: schema-valid and schema-violating data, each with a
registered user's bearer token and without one; the operations with path parameters get a
fifth run aimed at resources that exist. Each response must be no 5xx and must conform to the
schema (status code, content type, headers, body), and schema-violating data must be
rejected. The examples per run default to a CI-sized bound; ``MINIGRAM_FUZZ_EXAMPLES`` raises
it (benchmarks/fuzz.py). Each test prints one ``fuzz-figures:`` JSON line.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from minigram.app import create_app
from minigram.openapi import OPERATIONS, build_schema
from pytest_minigram.minigram_harness.stages import minigram_command
from pytest_minigram.server import ServerProcess, free_port

PASSWORD = "password123"
EXAMPLES = int(os.environ.get("MINIGRAM_FUZZ_EXAMPLES", "6"))
SEED = int(os.environ.get("MINIGRAM_FUZZ_SEED", "0")) or None
MARK = "fuzz-figures: "
#: Each case of these needs a fresh token (logout/all also revokes the fixture's own).
LOGOUTS = ("/api/logout", "/api/logout/all")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def image_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Figures:
    cases: int = 0
    server_errors: int = 0
    violations: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    detailed: Counter[str] = field(default_factory=Counter)


@dataclass
class Target:
    url: str
    session: requests.Session
    token: str
    photo_id: int
    username: str
    media_name: str

    def fresh_token(self) -> str:
        response = self.session.post(
            f"{self.url}/api/login", json={"username": self.username, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["token"])


def _prepare(url: str) -> Target:
    session = requests.Session()
    for name in ("fuzz_owner", "fuzz_other"):
        response = session.post(
            f"{url}/api/register", json={"username": name, "password": PASSWORD}
        )
        assert response.status_code == 201, response.text
    other = session.post(
        f"{url}/api/login", json={"username": "fuzz_other", "password": PASSWORD}
    ).json()["token"]
    photo = session.post(
        f"{url}/api/photos",
        headers={"Authorization": f"Bearer {other}"},
        files={"file": ("p.png", image_bytes(), "image/png")},
        data={"caption": "fuzz"},
    )
    assert photo.status_code == 201, photo.text
    target = Target(url, session, "", photo.json()["id"], "fuzz_owner",
                    photo.json()["url"].rsplit("/", 1)[1])
    target.token = target.fresh_token()
    return target


def fuzz_operation(
    operation: Any,
    target: Target,
    figures: Figures,
    *,
    mode: GenerationMode,
    authenticated: bool,
    known: bool = False,
) -> None:
    """Run ``EXAMPLES`` generated cases of ``operation``; record, never raise, failures."""
    path_parameters: dict[str, Any] = {}
    if known:
        names = {p["name"] for p in operation.definition.raw.get("parameters", [])}
        path_parameters = {
            k: v
            for k, v in {
                "id": target.photo_id,
                "name": target.media_name if operation.path.startswith("/media") else "fuzz_other",
            }.items()
            if k in names
        }
    logout = operation.path in LOGOUTS
    if authenticated and logout and mode == GenerationMode.NEGATIVE:
        return  # only the token could be negated, and each logout case needs a fresh one
    # A fixed Authorization header is never negated, so a negative case stays negative.
    fixed = {"Authorization": f"Bearer {target.token}"} if authenticated and not logout else None
    strategy = operation.as_strategy(
        generation_mode=mode, path_parameters=path_parameters or None, headers=fixed
    )
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
    label = f"{operation.method.upper()} {operation.path} [{mode.value}, " + (
        "auth" if authenticated else "anon"
    ) + (", known" if known else "") + "]"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=SEED is None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        headers: dict[str, str] = {}
        if authenticated:
            token = target.fresh_token() if logout else target.token
            headers["Authorization"] = f"Bearer {token}"
        elif case.headers:
            case.headers.pop("Authorization", None)
        response = case.call(base_url=target.url, session=target.session, headers=headers,
                             timeout=30)
        figures.cases += 1
        figures.statuses[response.status_code] += 1
        if response.status_code >= 500:
            figures.server_errors += 1
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a FailureGroup (a BaseExceptionGroup), or a check's error
            figures.detailed[label] += 1  # the first two of each run in full
            detail = f": {str(exc)[:1500]}" if figures.detailed[label] <= 2 else ""
            figures.violations.append(label + detail)

    if SEED is not None:
        from hypothesis import seed

        run = seed(SEED)(run)
    try:
        run()
    except Unsatisfiable:
        # Nothing to violate (no body, no parameters): negative mode has no cases here.
        assert mode == GenerationMode.NEGATIVE, label


def fuzz_app(url: str, only: str | None = None, edit: Callable[[Any], None] | None = None
             ) -> Figures:
    """Fuzz every operation (or the one with operationId ``only``) of the served schema,
    after ``edit`` changes it (to check that the checks catch what they should)."""
    schema_dict = requests.get(f"{url}/openapi.json", timeout=10).json()
    if edit is not None:
        edit(schema_dict)
    schema = schemathesis.openapi.from_dict(schema_dict)
    target = _prepare(url)
    figures = Figures()
    operations = [result.ok() for result in schema.get_all_operations()]
    if only is not None:
        operations = [op for op in operations if op.definition.raw["operationId"] == only]
        assert operations, only
    # Logout and delete change the fixture's state: run them after the others.
    operations.sort(key=lambda op: op.method.upper() == "DELETE" or op.path in LOGOUTS)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for authenticated in (True, False):
                fuzz_operation(operation, target, figures, mode=mode, authenticated=authenticated)
                if operation.path == "/api/logout/all":
                    target.token = target.fresh_token()
        if "{" in operation.path:
            fuzz_operation(
                operation, target, figures, mode=GenerationMode.POSITIVE, authenticated=True,
                known=True,
            )
    return figures


@pytest.fixture
def fuzz_server(
    app_settings_factory: Callable[..., Any],
    thread_server_factory: Callable[[Any], Any],
    tmp_path: Path,
) -> Iterator[Callable[..., str]]:
    """``make(stage, serve=False) -> url``: the app in a thread, or with ``serve=True`` a real
    ``minigram serve`` subprocess (two workers on stage 2), stopped at the end."""
    processes: list[ServerProcess] = []

    def make(stage: str, serve: bool = False) -> str:
        if not serve:
            settings = app_settings_factory(stage)
            return str(thread_server_factory(create_app(settings)).url)
        port = free_port()
        settings = app_settings_factory(stage, port=port, workers=2 if stage == "2" else 1)
        url = f"http://127.0.0.1:{port}"
        process = ServerProcess(
            minigram_command("serve"),
            env=settings.to_env(),
            health_url=f"{url}/healthz",
            log_path=tmp_path / f"serve-{stage}.log",
            name=f"minigram stage {stage}",
        )
        processes.append(process)
        process.start(timeout=60)
        return url

    yield make
    for process in processes:
        process.stop()


def test_schema_describes_every_route() -> None:
    from minigram.app import ROUTES

    schema = build_schema(ROUTES)
    documented = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert documented == {route.name for route in ROUTES} == set(OPERATIONS)
    for path in schema["paths"].values():
        for op in path.values():
            assert "503" in op["responses"]
            assert any(code.startswith("2") for code in op["responses"])


def test_schema_is_valid_openapi() -> None:
    from minigram.app import ROUTES

    loaded = schemathesis.openapi.from_dict(build_schema(ROUTES))
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) == len(OPERATIONS)


@pytest.mark.parametrize("stage", ["1", "2"])
def test_fuzz_finds_no_server_errors_and_no_schema_violations(
    stage: str, fuzz_server: Callable[..., str]
) -> None:
    url = fuzz_server(stage, serve=True)
    started = time.monotonic()
    figures = fuzz_app(url)
    seconds = time.monotonic() - started
    print(
        MARK
        + json.dumps(
            {
                "stage": stage,
                "examples": EXAMPLES,
                "cases": figures.cases,
                "server_errors": figures.server_errors,
                "violations": len(figures.violations),
                "statuses": dict(sorted(figures.statuses.items())),
                "seconds": round(seconds, 1),
            }
        )
    )
    assert figures.cases >= EXAMPLES * len(OPERATIONS)
    assert figures.server_errors == 0, "\n\n".join(figures.violations)
    assert figures.violations == [], "\n\n".join(figures.violations[:5])



def _require_email(schema: Any) -> None:
    schema["components"]["schemas"]["Profile"]["required"].append("email")


def _other_header(schema: Any) -> None:
    schema["components"]["headers"]["X-Content-Type-Options"]["schema"]["enum"] = ["x"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [(_require_email, "email"), (_other_header, "Response header does not conform")],
)
def test_the_checks_catch_a_response_that_breaks_the_schema(
    fuzz_server: Callable[[str], str], edit: Callable[[Any], None], expected: str
) -> None:
    """The harness is not vacuous: a schema the app does not honour yields violations."""
    figures = fuzz_app(fuzz_server("1"), only="profile", edit=edit)
    assert figures.cases > 0 and figures.server_errors == 0
    assert figures.violations
    assert expected in "\n".join(figures.violations)
