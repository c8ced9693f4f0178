"""Results files and run history: a directory of numbered JSON files, or a SQL database.

The run document is described in docs/results-file.md. ``open_storage`` picks the backend
from the location, the way pytest-benchmark picks one from its storage URI: a plain path is a
:class:`FileStorage`, a SQLAlchemy URL (``sqlite:///…``, ``postgresql://…``) a
:class:`SQLStorage`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pytest_minigram.load.result import Result

__all__ = [
    "RUN_SCHEMA",
    "RUN_VERSION",
    "BaselineError",
    "FileStorage",
    "NoSavedRun",
    "RunFile",
    "SQLStorage",
    "Storage",
    "load_run",
    "new_run",
    "open_storage",
    "save_run",
    "validate_run",
]

RUN_SCHEMA = "pytest-minigram/run"
RUN_VERSION = 1
RESULT_SCHEMA = "pytest-minigram/result"
VERDICTS = ("passed", "failed", "error")
_NUMBERED = re.compile(r"^(\d{4,})_(.*)\.json$")


class BaselineError(Exception):
    """A results file or stored run that cannot be used; the message names it and the problem."""


class NoSavedRun(BaselineError):
    """The storage holds no run that matches the reference (nothing saved yet, or no such name)."""


@dataclass(frozen=True)
class RunFile:
    """One stored run, as listed by :meth:`Storage.list`."""

    id: str  # file path, or the database row id
    number: int
    name: str
    created_at: str | None
    commit: str | None
    machine_id: str | None


def new_run(environment: dict[str, Any], tests: list[dict[str, Any]] | None = None,
            created_at: str | None = None) -> dict[str, Any]:
    return {
        "schema": RUN_SCHEMA,
        "version": RUN_VERSION,
        "created_at": created_at or datetime.now(UTC).isoformat(),
        "environment": environment,
        "tests": list(tests or []),
    }


def _fail(source: str, problem: str) -> BaselineError:
    return BaselineError(f"{source}: {problem}")


def _check_result(source: str, where: str, key: str, result: Any) -> None:
    if not isinstance(result, dict) or result.get("schema") != RESULT_SCHEMA:
        raise _fail(source, f"{where}: {key!r} is not a {RESULT_SCHEMA!r} object")
    try:
        _check_ranges(Result.from_dict(result))
    except _OutOfRange as exc:
        raise _fail(source, f"{where}: {key}: {exc}") from None
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise _fail(source, f"{where}: invalid {key} "
                            f"({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # hdrh raises its own types and zlib.error on bad blobs
        raise _fail(source, f"{where}: corrupt histogram in {key} "
                            f"({type(exc).__name__}: {exc})") from None


class _OutOfRange(Exception):
    pass


def _check_ranges(result: Result) -> None:
    """Counts and durations are never negative, error rates are fractions."""
    def need(ok: bool, what: str, value: Any) -> None:
        if not ok:
            raise _OutOfRange(f"{what} is {value!r}, out of range")

    need(math.isfinite(result.duration) and result.duration >= 0, "duration", result.duration)
    need(result.iterations >= 0, "iterations", result.iterations)
    need(result.dropped_iterations >= 0, "dropped_iterations", result.dropped_iterations)
    for name, stats in [("total", result.total), *result.actions.items()]:
        need(stats.count >= 0, f"{name}.count", stats.count)
        need(0 <= stats.errors <= max(stats.count, 0), f"{name}.errors", stats.errors)
        need(all(n >= 0 for n in stats.apdex_counts), f"{name}.apdex", stats.apdex_counts)
    for row in result.timeseries:
        for key in ("requests", "errors", "users"):
            value = row.get(key, 0)
            need(isinstance(value, int | float) and value >= 0, f"timeseries {key}", value)


def validate_run(data: Any, source: str = "<run>") -> dict[str, Any]:
    """Check the shape of a run document; raise :class:`BaselineError` naming ``source``."""
    if not isinstance(data, dict):
        raise _fail(source, f"expected a JSON object, found {type(data).__name__}")
    if data.get("schema") != RUN_SCHEMA:
        raise _fail(source, f"not a pytest-minigram results file "
                            f"(schema={data.get('schema')!r}, expected {RUN_SCHEMA!r})")
    if data.get("version") != RUN_VERSION:
        raise _fail(source, f"unsupported results file version {data.get('version')!r} "
                            f"(this version of pytest-minigram reads {RUN_VERSION})")
    if not isinstance(data.get("environment"), dict):
        raise _fail(source, "missing or invalid 'environment' object")
    tests = data.get("tests")
    if not isinstance(tests, list):
        raise _fail(source, "missing or invalid 'tests' list")
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(tests):
        where = f"tests[{i}]"
        if not isinstance(entry, dict):
            raise _fail(source, f"{where} is not an object")
        test, stage = entry.get("test"), entry.get("stage")
        if not isinstance(test, str) or not isinstance(stage, str):
            raise _fail(source, f"{where} needs string 'test' and 'stage' fields")
        if (test, stage) in seen:
            raise _fail(source, f"{where}: duplicate entry for {test} stage {stage}")
        seen.add((test, stage))
        verdict = entry.get("verdict")
        if verdict not in VERDICTS:
            raise _fail(source, f"{where} ({test}): verdict {verdict!r} is not one of "
                                f"{', '.join(VERDICTS)}")
        result = entry.get("result")
        if result is None:
            if verdict != "error":
                raise _fail(source, f"{where} ({test}): no result, but verdict is {verdict!r}")
        else:
            _check_result(source, f"{where} ({test})", "result", result)
        if entry.get("duet_baseline") is not None:
            _check_result(source, f"{where} ({test})", "duet_baseline", entry["duet_baseline"])
        slo = entry.get("slo", [])
        if not isinstance(slo, list) or not all(isinstance(s, dict) for s in slo):
            raise _fail(source, f"{where} ({test}): 'slo' must be a list of objects")
    return data


def load_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a results file. Every problem is a :class:`BaselineError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(str(p), "results file not found") from None
    except IsADirectoryError:
        raise _fail(str(p), "is a directory, not a results file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(str(p), f"cannot read results file ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(str(p), f"corrupt results file, invalid JSON at line {exc.lineno} "
                            f"column {exc.colno}: {exc.msg}") from None
    return validate_run(data, str(p))


def _finite(value: Any) -> Any:
    """NaN and infinities become ``null``: strict JSON readers (jq, browsers) reject them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def save_run(run: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Validate and write atomically (a crash never leaves half a baseline behind)."""
    p = Path(path)
    validate_run(run, str(p))
    run = _finite(run)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as fh:
            json.dump(run, fh, indent=2, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def _run_name(run: dict[str, Any], name: str | None) -> str:
    if not name:
        git = run.get("environment", {}).get("git") or {}
        commit = git.get("commit")
        name = (commit[:12] + ("_dirty" if git.get("dirty") else "")) if commit else "run"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    if not safe:
        raise ValueError(f"invalid run name {name!r}")
    return safe


@runtime_checkable
class Storage(Protocol):
    """Where runs are kept. ``ref`` is ``"latest"``, a run number, a name or a file path."""

    location: str

    def save(self, run: dict[str, Any], name: str | None = None) -> str: ...
    def load(self, ref: str | int = "latest") -> dict[str, Any]: ...
    def list(self) -> list[RunFile]: ...
    def close(self) -> None: ...


class FileStorage:
    """``<root>/<machine-id>/0001_<name>.json``, numbered like pytest-benchmark's storage."""

    def __init__(self, root: str | os.PathLike[str], machine_id: str | None = None) -> None:
        from pytest_minigram.environment import machine_id as current_machine_id

        self.root = Path(root)
        self.machine_id = machine_id or current_machine_id()
        self.directory = self.root / self.machine_id
        self.location = str(self.directory)

    def _files(self) -> list[tuple[int, str, Path]]:
        if not self.directory.is_dir():
            return []
        out = []
        for f in self.directory.iterdir():
            m = _NUMBERED.match(f.name)
            if m and f.is_file():
                out.append((int(m.group(1)), m.group(2), f))
        return sorted(out)

    def save(self, run: dict[str, Any], name: str | None = None) -> str:
        safe = _run_name(run, name)
        self.directory.mkdir(parents=True, exist_ok=True)
        files = self._files()
        number = files[-1][0] + 1 if files else 1
        path = self.directory / f"{number:04d}_{safe}.json"
        save_run(run, path)
        return str(path)

    def _resolve(self, ref: str | int) -> Path:
        text = str(ref)
        candidate = Path(text)
        if candidate.suffix == ".json" or os.sep in text or "/" in text:
            return candidate
        files = self._files()
        available = ", ".join(f.name for _, _, f in files[-5:]) or "none"
        if text == "latest":
            if not files:
                raise NoSavedRun(f"{self.location}: no saved run to compare against "
                                 "(save one first with --minigram-save or --minigram-autosave)")
            return files[-1][2]
        if text.isdigit():
            for number, _, f in files:
                if number == int(text):
                    return f
        else:
            named = [f for _, n, f in files if n == text or f.stem == text]
            if named:
                return named[-1]
        raise NoSavedRun(f"{self.location}: no saved run matching {text!r} "
                         f"(latest runs: {available})")

    def load(self, ref: str | int = "latest") -> dict[str, Any]:
        return load_run(self._resolve(ref))

    def list(self) -> list[RunFile]:
        out = []
        for number, name, f in self._files():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
                created = data.get("created_at")
                commit = ((data.get("environment") or {}).get("git") or {}).get("commit")
            except (OSError, ValueError, AttributeError):
                created = commit = None
            out.append(RunFile(str(f), number, name, created, commit, self.machine_id))
        return out

    def close(self) -> None:
        pass


class SQLStorage:
    """Run history in a database through SQLAlchemy; the table is created on first use."""

    def __init__(self, url: str, machine_id: str | None = None) -> None:
        import sqlalchemy as sa

        from pytest_minigram.environment import machine_id as current_machine_id

        self._sa = sa
        self.machine_id = machine_id or current_machine_id()
        try:
            self.engine = sa.create_engine(_default_driver(sa.engine.make_url(url)))
        except Exception as exc:  # bad URL, missing driver
            raise BaselineError(f"{url}: cannot open storage ({exc})") from None
        self.location = self.engine.url.render_as_string(hide_password=True)
        meta = sa.MetaData()
        self.table = sa.Table(
            "minigram_runs", meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("machine_id", sa.String(200), nullable=False, index=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("created_at", sa.String(64), nullable=False),
            sa.Column("commit", sa.String(64)),
            sa.Column("branch", sa.String(200)),
            sa.Column("fingerprint", sa.String(64)),
            sa.Column("data", sa.Text, nullable=False),
        )
        self._meta = meta
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            try:
                self._meta.create_all(self.engine)
            except self._sa.exc.SQLAlchemyError as exc:
                raise BaselineError(f"{self.location}: cannot use storage ({exc.orig or exc})"
                                    ) from None
            self._ready = True

    def save(self, run: dict[str, Any], name: str | None = None) -> str:
        validate_run(run, self.location)
        self._ensure()
        env = run.get("environment", {})
        git = env.get("git") or {}
        row = {
            "machine_id": self.machine_id, "name": _run_name(run, name),
            "created_at": run.get("created_at") or datetime.now(UTC).isoformat(),
            "commit": git.get("commit"), "branch": git.get("branch"),
            "fingerprint": env.get("fingerprint"),
            "data": json.dumps(_finite(run), allow_nan=False),
        }
        with self.engine.begin() as conn:
            new_id = conn.execute(self.table.insert().values(**row)).inserted_primary_key[0]
        return str(new_id)

    def _rows(self) -> list[Any]:
        self._ensure()
        t = self.table
        query = (self._sa.select(t.c.id, t.c.name, t.c.created_at, t.c.commit)
                 .where(t.c.machine_id == self.machine_id).order_by(t.c.id))
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def load(self, ref: str | int = "latest") -> dict[str, Any]:
        text = str(ref)
        if text.endswith(".json"):
            return load_run(text)
        rows = self._rows()
        match = None
        if text == "latest":
            match = rows[-1] if rows else None
        elif text.isdigit():
            match = next((r for r in rows if r.id == int(text)), None)
        else:
            named = [r for r in rows if r.name == text]
            match = named[-1] if named else None
        source = f"{self.location} run {text!r}"
        if match is None:
            latest = ", ".join(f"{r.id}_{r.name}" for r in rows[-5:]) or "none"
            raise NoSavedRun(f"{self.location}: no saved run matching {text!r} for machine "
                             f"{self.machine_id} (latest runs: {latest})")
        with self.engine.connect() as conn:
            data = conn.execute(self._sa.select(self.table.c.data)
                                .where(self.table.c.id == match.id)).scalar_one()
        try:
            return validate_run(json.loads(data), source)
        except json.JSONDecodeError as exc:
            raise _fail(source, f"corrupt stored run ({exc.msg})") from None

    def list(self) -> list[RunFile]:
        return [RunFile(str(r.id), r.id, r.name, r.created_at, r.commit, self.machine_id)
                for r in self._rows()]

    def close(self) -> None:
        self.engine.dispose()

    def drop(self) -> None:
        """Remove the history table (for tests and for starting over)."""
        self._meta.drop_all(self.engine)
        self._ready = False


def _default_driver(url: Any) -> Any:
    """SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; fall back to the installed psycopg2."""
    if url.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None:
        return url.set(drivername="postgresql+psycopg2")
    return url


def history(storage: Storage, name: str, count: int) -> list[dict[str, Any]]:
    """The last ``count`` runs saved under ``name``, oldest first (NoSavedRun if none)."""
    numbers = [f.number for f in storage.list() if f.name == name][-count:]
    if not numbers:
        raise NoSavedRun(f"no saved run named {name!r}")
    return [storage.load(str(n)) for n in numbers]


def pooled_baseline(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One baseline from several saved runs of the same tests: each test's results joined as
    rounds (``concat``), so the gate counts the spread between the runs as noise, as it does
    between the rounds of one run. The latest run's environment and verdicts stand for it."""
    from pytest_minigram.load.result import concat

    latest = runs[-1]
    tests = []
    for entry in latest["tests"]:
        key = (entry["test"], entry["stage"])
        results = [Result.from_dict(t["result"]) for run in runs for t in run["tests"]
                   if (t["test"], t["stage"]) == key and t.get("result") is not None]
        if len(results) > 1:
            entry = {**entry, "result": concat(results).to_dict(), "pooled_runs": len(results)}
        tests.append(entry)
    return {**latest, "tests": tests}


def open_storage(location: str | os.PathLike[str], machine_id: str | None = None) -> Storage:
    """A directory path -> :class:`FileStorage`; a SQLAlchemy URL -> :class:`SQLStorage`."""
    text = os.fspath(location)
    if text.startswith("file://"):
        return FileStorage(text[len("file://"):], machine_id)
    if "://" in text:
        return SQLStorage(text, machine_id)
    return FileStorage(text, machine_id)
