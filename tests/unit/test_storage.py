"""Results files and run history: schema, round trip, bad baselines, file and SQL storage."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from pytest_minigram.storage import (
    RUN_SCHEMA,
    BaselineError,
    FileStorage,
    SQLStorage,
    Storage,
    load_run,
    new_run,
    open_storage,
    save_run,
    validate_run,
)

DATA = Path(__file__).parent / "data" / "compare"
COMMIT12 = "0" * 12  # the golden baseline's commit, shortened
PG_ADMIN_URL = os.environ.get("MINIGRAM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return load_run(DATA / "baseline.json")


def test_round_trip_is_exact(run: dict[str, Any], tmp_path: Path) -> None:
    path = save_run(run, tmp_path / "sub" / "r.json")
    assert load_run(path) == run
    assert json.loads(path.read_text())["schema"] == RUN_SCHEMA
    assert not list(path.parent.glob(".*.tmp")), "no temporary file left behind"


def test_nan_is_written_as_null(run: dict[str, Any], tmp_path: Path) -> None:
    doc = copy.deepcopy(run)
    doc["tests"][0]["slo"] = [{"threshold": "apdex > 0.9", "measured": math.nan,
                               "passed": False}]
    path = save_run(doc, tmp_path / "r.json")
    assert '"measured": null' in path.read_text()
    assert load_run(path)["tests"][0]["slo"][0]["measured"] is None


def test_new_run_shape() -> None:
    doc = new_run({"fingerprint": "x"})
    assert doc["schema"] == RUN_SCHEMA and doc["version"] == 1 and doc["tests"] == []
    assert doc["created_at"].endswith("+00:00")
    assert validate_run(doc) is doc


def _broken(run: dict[str, Any], change: str) -> dict[str, Any]:
    doc = copy.deepcopy(run)
    t = doc["tests"][0]
    if change == "schema":
        doc["schema"] = "pytest-benchmark"
    elif change == "version":
        doc["version"] = 99
    elif change == "tests":
        del doc["tests"]
    elif change == "verdict":
        t["verdict"] = "great"
    elif change == "result":
        t["result"] = {"schema": "something else"}
    elif change == "histogram":
        t["result"]["total"]["histogram"] = "bm90IGEgaGlzdG9ncmFt"
    elif change == "missing-field":
        del t["result"]["duration"]
    elif change == "duplicate":
        doc["tests"].append(copy.deepcopy(t))
    elif change == "no-result":
        t["result"] = None
    elif change == "duet":
        t["duet_baseline"] = copy.deepcopy(t["result"])
        t["duet_baseline"]["total"]["histogram"] = "bm90IGEgaGlzdG9ncmFt"
    return doc


@pytest.mark.parametrize(("change", "message"), [
    ("schema", "not a pytest-minigram results file"),
    ("version", "unsupported results file version 99"),
    ("tests", "missing or invalid 'tests' list"),
    ("verdict", "verdict 'great' is not one of passed, failed, error"),
    ("result", "is not a 'pytest-minigram/result' object"),
    ("histogram", "corrupt histogram"),
    ("missing-field", "invalid result (KeyError"),
    ("duplicate", "duplicate entry for tests/perf/test_feed.py::test_feed stage 2"),
    ("no-result", "no result, but verdict is 'passed'"),
    ("duet", "corrupt histogram in duet_baseline"),
])
def test_schema_validation_names_file_and_problem(
    run: dict[str, Any], tmp_path: Path, change: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_broken(run, change)))
    with pytest.raises(BaselineError) as info:
        load_run(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_error_verdict_may_have_no_result(run: dict[str, Any]) -> None:
    doc = copy.deepcopy(run)
    doc["tests"][0].update(result=None, verdict="error")
    validate_run(doc)


def test_save_refuses_an_invalid_run(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="not a pytest-minigram results file"):
        save_run({"schema": "nope"}, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_missing_and_corrupt_baselines(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(BaselineError, match=f"^{missing}: results file not found$"):
        load_run(missing)
    with pytest.raises(BaselineError, match=r"corrupt.json: corrupt results file, invalid JSON "
                                            r"at line \d+ column \d+"):
        load_run(DATA / "corrupt.json")
    with pytest.raises(BaselineError, match="is a directory"):
        load_run(tmp_path)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(BaselineError, match="expected a JSON object, found list"):
        load_run(tmp_path / "list.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(BaselineError, match="cannot read results file"):
        load_run(tmp_path / "bin.json")


# --- file storage -------------------------------------------------------------------------


def test_file_storage_numbers_and_resolves_runs(run: dict[str, Any], tmp_path: Path) -> None:
    st = open_storage(tmp_path / ".minigram", machine_id="Linux-CPython-3.11-64bit")
    assert isinstance(st, FileStorage) and isinstance(st, Storage)
    with pytest.raises(BaselineError, match="no saved run to compare against"):
        st.load("latest")
    first = st.save(run, name="main")
    second_doc = copy.deepcopy(run)
    second_doc["created_at"] = "2026-11-29T00:00:00+00:00"
    second = st.save(second_doc)  # named after the commit
    third = st.save(run, name="with spaces/and slashes")
    d = tmp_path / ".minigram" / "Linux-CPython-3.11-64bit"
    assert first == str(d / "0001_main.json")
    assert second == str(d / f"0002_{COMMIT12}.json")
    assert third == str(d / "0003_with-spaces-and-slashes.json")
    assert st.load("latest") == run
    assert st.load(2)["created_at"] == "2026-11-29T00:00:00+00:00"
    assert st.load("0002")["created_at"] == "2026-11-29T00:00:00+00:00"
    assert st.load("main") == run
    assert st.load(second)["created_at"] == "2026-11-29T00:00:00+00:00"
    listed = st.list()
    assert [(r.number, r.name) for r in listed] == [
        (1, "main"), (2, COMMIT12), (3, "with-spaces-and-slashes")]
    assert listed[0].commit == run["environment"]["git"]["commit"]
    with pytest.raises(BaselineError, match=r"no saved run matching 'release-1' .*0003_with"):
        st.load("release-1")
    with pytest.raises(BaselineError, match="no saved run matching '7'"):
        st.load(7)


def test_file_storage_reports_a_corrupt_stored_run(run: dict[str, Any], tmp_path: Path) -> None:
    st = FileStorage(tmp_path, machine_id="m")
    path = Path(st.save(run, name="x"))
    path.write_text("{")
    with pytest.raises(BaselineError, match=f"{path}: corrupt results file"):
        st.load("latest")
    assert st.list()[0].commit is None


def test_open_storage_dispatch(tmp_path: Path) -> None:
    assert isinstance(open_storage(f"file://{tmp_path}"), FileStorage)
    st = open_storage(f"sqlite:///{tmp_path / 'h.db'}")
    assert isinstance(st, SQLStorage)
    st.close()


# --- SQL storage --------------------------------------------------------------------------


def _sql_round_trip(st: SQLStorage, run: dict[str, Any]) -> None:
    with pytest.raises(BaselineError, match="no saved run matching 'latest'"):
        st.load("latest")
    first = st.save(run, name="main")
    later = copy.deepcopy(run)
    later["created_at"] = "2026-11-29T00:00:00+00:00"
    second = st.save(later)
    assert st.load("latest") == later
    assert st.load(first) == run
    assert st.load(int(second)) == later
    assert st.load("main") == run
    listed = st.list()
    assert [(r.id, r.name) for r in listed] == [(first, "main"), (second, COMMIT12)]
    assert listed[1].created_at == "2026-11-29T00:00:00+00:00"
    with pytest.raises(BaselineError, match="no saved run matching 'nope' for machine m1"):
        st.load("nope")
    with pytest.raises(BaselineError, match="not a pytest-minigram results file"):
        st.save({"schema": "x"})


def _other_machine_sees_nothing(url: str) -> None:
    other = SQLStorage(url, machine_id="m2")
    try:
        assert other.list() == []
    finally:
        other.close()


def test_sqlite_storage_round_trip(run: dict[str, Any], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    st = SQLStorage(url, machine_id="m1")
    try:
        _sql_round_trip(st, run)
        _other_machine_sees_nothing(url)
    finally:
        st.close()


def test_sql_storage_bad_url_is_a_clear_error() -> None:
    with pytest.raises(BaselineError, match="nosuchdb://x: cannot open storage"):
        SQLStorage("nosuchdb://x")


def test_postgresql_storage_round_trip(run: dict[str, Any], pg_url: str) -> None:
    st = open_storage(pg_url, machine_id="m1")
    assert isinstance(st, SQLStorage)
    try:
        _sql_round_trip(st, run)
        _other_machine_sees_nothing(pg_url)
        with st.engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM minigram_runs")).scalar_one()
        assert count == 2
        st.drop()
    finally:
        st.close()


@pytest.mark.parametrize(("path", "value", "message"), [
    (("result", "total", "count"), -5, "total.count is -5, out of range"),
    (("result", "total", "errors"), 10**9, "total.errors is 1000000000, out of range"),
    (("result", "duration"), -1.0, "duration is -1.0, out of range"),
    (("result", "dropped_iterations"), -3, "dropped_iterations is -3, out of range"),
])
def test_values_out_of_range_are_refused(run: dict[str, Any], tmp_path: Path,
                                         path: tuple[str, ...], value: Any,
                                         message: str) -> None:
    """A baseline with negative counts was accepted and shown as throughput -5/s."""
    broken = copy.deepcopy(run)
    node = broken["tests"][0]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    file = tmp_path / "negative.json"
    file.write_text(json.dumps(broken))
    with pytest.raises(BaselineError, match=message):
        load_run(file)


def test_a_history_pools_the_saved_runs_as_rounds(run: dict[str, Any], tmp_path: Path) -> None:
    """Three runs saved under one name become one baseline whose rounds are the runs, so the
    gate's two-level bootstrap counts the spread between saved runs as noise."""
    from pytest_minigram.gate import compare_runs
    from pytest_minigram.storage import history, pooled_baseline

    st = FileStorage(tmp_path, machine_id="m1")
    for _ in range(3):
        st.save(run, "main")
    st.save(run, "other")
    runs = history(st, "main", 5)
    assert len(runs) == 3
    pooled = pooled_baseline(runs)
    entry = pooled["tests"][0]
    assert entry["pooled_runs"] == 3
    assert len(entry["result"]["rounds"]) == 3
    assert entry["result"]["total"]["count"] == 3 * run["tests"][0]["result"]["total"]["count"]
    change = compare_runs(pooled, run).comparisons[0].changes[0]
    assert change.rounds_baseline == 3 and change.rounds_current == 1
    with pytest.raises(BaselineError, match="no saved run named 'nope'"):
        history(st, "nope", 2)
