"""The example GitHub Actions workflow, .github/workflows/perf.yml, as far as it can be checked
here: it parses, has the services and steps it promises, and its pytest commands use only
options the plugin declares, with values the plugin accepts."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_minigram.gate import parse_tolerances
from pytest_minigram.minigram_harness.plugin_options import OPTIONS as HARNESS_OPTIONS
from pytest_minigram.plugin.options import DEFAULT_STORAGE, OPTIONS

WORKFLOW = Path(__file__).parents[2] / ".github" / "workflows" / "perf.yml"
OPTION_NAMES = {opt.name for opt in (*OPTIONS, *HARNESS_OPTIONS)}


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def job(workflow: dict[str, Any]) -> dict[str, Any]:
    (only,) = workflow["jobs"].values()
    return dict(only)


def step(job: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [s for s in job["steps"] if s.get("name") == name]
    return dict(found)


def pytest_args(job: dict[str, Any], name: str, env: dict[str, str]) -> list[str]:
    command = step(job, name)["run"]
    for key, value in env.items():
        command = command.replace(f"${key}", value)
    args = shlex.split(command)
    assert args[:3] == ["pytest", "-m", "perf"]
    return args[3:]


def options(args: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for arg in args:
        assert arg.startswith("--"), arg
        name, _, value = arg.partition("=")
        out[name] = value or None
    return out


def test_triggers(workflow: dict[str, Any]) -> None:
    # YAML 1.1 reads a bare `on` key as True
    on = workflow.get("on", workflow.get(True))
    assert set(on) == {"pull_request", "push"}
    assert on["push"]["branches"] == ["main"]
    assert workflow["permissions"]["actions"] == "read"


def test_services(job: dict[str, Any]) -> None:
    services = job["services"]
    assert services["postgres"]["image"] == "postgres:15"
    assert services["postgres"]["ports"] == ["5432:5432"]
    assert "pg_isready" in services["postgres"]["options"]
    assert services["redis"]["image"] == "redis:7"
    assert services["redis"]["ports"] == ["6379:6379"]
    assert "redis-cli ping" in services["redis"]["options"]


def test_backends_point_at_the_services(workflow: dict[str, Any]) -> None:
    env = workflow["env"]
    assert env["MINIGRAM_PG_URL"].startswith("postgresql://")
    assert "@127.0.0.1:5432/" in env["MINIGRAM_PG_URL"]
    assert env["MINIGRAM_REDIS_URL"] == "redis://127.0.0.1:6379/0"
    # the plugin reads these variables when --minigram-pg-url / --minigram-redis-url are unset
    by_name = {opt.name: opt for opt in HARNESS_OPTIONS}
    assert by_name["--minigram-pg-url"].env == "MINIGRAM_PG_URL"
    assert by_name["--minigram-redis-url"].env == "MINIGRAM_REDIS_URL"


def test_install(job: dict[str, Any]) -> None:
    assert step(job, "Install")["run"] == "pip install -e '.[minigram,test]'"


def test_pull_request_compares_with_the_restored_baseline(
    workflow: dict[str, Any], job: dict[str, Any]
) -> None:
    restore = step(job, "Restore the main branch's baseline")
    assert restore["if"] == "github.event_name == 'pull_request'"
    assert restore["uses"].startswith("dawidd6/action-download-artifact@")
    assert restore["with"]["branch"] == "main"
    assert restore["with"]["path"] == DEFAULT_STORAGE

    run = step(job, "Perf tests, compared with main")
    assert run["if"] == "github.event_name == 'pull_request'"
    opts = options(pytest_args(job, "Perf tests, compared with main", workflow["env"]))
    assert set(opts) <= OPTION_NAMES, set(opts) - OPTION_NAMES
    assert opts["--stage"] == "2"
    assert "--minigram-require-backends" in opts and "--minigram-autosave" in opts
    assert opts["--minigram-compare"] == "main"
    tolerances = parse_tolerances(opts["--minigram-compare-fail"])
    assert [t.metric for t in tolerances] == ["p50", "error_rate"]
    assert opts["--minigram-report"] and opts["--minigram-results"]


def test_push_to_main_saves_the_baseline(workflow: dict[str, Any], job: dict[str, Any]) -> None:
    run = step(job, "Perf tests, saved as the baseline")
    assert run["if"] == "github.event_name == 'push'"
    opts = options(pytest_args(job, "Perf tests, saved as the baseline", workflow["env"]))
    assert set(opts) <= OPTION_NAMES, set(opts) - OPTION_NAMES
    assert opts["--stage"] == "2" and "--minigram-require-backends" in opts
    pr = options(pytest_args(job, "Perf tests, compared with main", workflow["env"]))
    assert opts["--minigram-save"] == pr["--minigram-compare"]  # what the PR restores
    assert "--minigram-compare" not in opts and "--minigram-storage" not in opts

    keep = step(job, "Keep the baseline")
    restore = step(job, "Restore the main branch's baseline")
    assert keep["uses"].startswith("actions/upload-artifact@")
    assert keep["with"]["name"] == restore["with"]["name"]
    assert keep["with"]["path"] == DEFAULT_STORAGE
    assert "push" in keep["if"]


def test_report_and_results_are_uploaded(workflow: dict[str, Any], job: dict[str, Any]) -> None:
    upload = step(job, "Upload the report and the results")
    assert upload["if"] == "always()"
    assert upload["uses"].startswith("actions/upload-artifact@")
    paths = upload["with"]["path"].split()
    for name in ("Perf tests, compared with main", "Perf tests, saved as the baseline"):
        opts = options(pytest_args(job, name, workflow["env"]))
        assert opts["--minigram-report"] in paths
        assert opts["--minigram-results"] in paths


def test_every_step_uses_a_pinned_action_or_runs_a_command(job: dict[str, Any]) -> None:
    for s in job["steps"]:
        assert ("uses" in s) != ("run" in s), s
        if "uses" in s:
            assert "@" in s["uses"], s
