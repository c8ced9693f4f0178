"""``minigram check``: nothing the server acknowledged is lost, nothing is half-written.

The load engine's Minigram journeys can log every write they made, with its outcome, as JSON
lines (``params={"write_log": path}``; see ``pytest_minigram.minigram_harness.journeys``). Each line
is one request::

    {"op": "like", "user": "seed_user_3", "photo_id": 12, "ok": true, "status": 200,
     "t0": 1764399000.123, "t1": 1764399000.131}

``op`` is one of register, upload, delete_photo, like, unlike, follow, unfollow; ``upload``
lines carry ``photo_id`` and ``filename``, follow lines ``target``. `check` compares them
with the database and the media directory:

* every acknowledged (2xx) registration and upload is there, and every photo it names has
  its file;
* for each (user, photo) like and each (user, target) follow, the state is that of the last
  write to it, when that write was acknowledged and did not overlap in time with another
  write to the same pair (otherwise the server may have applied them in either order);
* an acknowledged photo deletion left neither the row nor the file;
* whatever was or was not acknowledged: no photo row without its file, no stored file
  without its row, no partial upload (``.<name>.tmp``) left behind.

A write answered with an error may be absent or present: only the last two rules apply.

The check may run while the server still finishes requests whose clients are gone (a load
test that stops at its deadline abandons the uploads in flight). Until their rows commit,
those look like files without rows, so the media rules are read again for up to ``settle``
seconds before a mismatch counts.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.pool import NullPool

from minigram.db import engine_url
from minigram.media import NAME_RE
from minigram.models import follows, likes, photos, users
from minigram.settings import Settings

__all__ = ["CheckReport", "check", "read_writes"]

WRITE_OPS = ("register", "upload", "delete_photo", "like", "unlike", "follow", "unfollow")
#: At most this many problems of each kind are listed; all are counted.
SHOWN_PER_KIND = 10
#: Seconds to wait for requests in flight before a file without its row (or a row without
#: its file, or a partial upload) counts.
SETTLE = 3.0


@dataclass
class CheckReport:
    """What `check` compared and what it found wrong; falsy when something is wrong."""

    checked: dict[str, int] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def problem(self, kind: str, text: str) -> None:
        self.problems.setdefault(kind, []).append(text)

    @property
    def problem_count(self) -> int:
        return sum(len(items) for items in self.problems.values())

    def summary(self) -> str:
        checked = ", ".join(f"{n} {what}" for what, n in self.checked.items())
        if self.ok:
            return f"minigram check: OK ({checked})"
        lines = [f"minigram check: FAILED, {self.problem_count} problem(s) ({checked})"]
        for kind, items in self.problems.items():
            lines.append(f"  {kind}: {len(items)}")
            lines += [f"    - {item}" for item in items[:SHOWN_PER_KIND]]
            if len(items) > SHOWN_PER_KIND:
                lines.append(f"    ... and {len(items) - SHOWN_PER_KIND} more")
        return "\n".join(lines)

    __str__ = summary


def read_writes(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The write records of a JSON-lines log; a torn last line (a killed writer) is skipped."""
    records = []
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue
            raise ValueError(f"{path}:{number}: not a JSON line: {line[:80]!r}") from None
        if record.get("op") not in WRITE_OPS:
            raise ValueError(f"{path}:{number}: unknown op {record.get('op')!r}")
        records.append(record)
    return records


@dataclass
class _State:
    users: set[str]
    photos: dict[int, str]  # id -> filename
    likes: set[tuple[str, int]]
    follows: set[tuple[str, str]]
    files: set[str]
    partial: list[str]


def _read_state(settings: Settings, engine: Engine) -> _State:
    with engine.connect() as conn:
        names = dict(conn.execute(select(users.c.id, users.c.username)).all())
        photo_rows = dict(conn.execute(select(photos.c.id, photos.c.filename)).all())
        like_rows = conn.execute(select(likes.c.user_id, likes.c.photo_id)).all()
        follow_rows = conn.execute(select(follows.c.follower_id, follows.c.followee_id)).all()
    files: set[str] = set()
    partial: list[str] = []
    directory = settings.media_dir
    if directory.is_dir():
        for entry in os.scandir(directory):
            if not entry.is_file(follow_symlinks=False):
                continue
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                partial.append(entry.name)
            elif NAME_RE.match(entry.name):
                files.add(entry.name)
    return _State(
        users=set(names.values()),
        photos=photo_rows,
        likes={(names[u], p) for u, p in like_rows},
        follows={(names[a], names[b]) for a, b in follow_rows},
        files=files,
        partial=sorted(partial),
    )


def _half_written(state: _State) -> bool:
    return bool(state.partial) or set(state.photos.values()) != state.files


def _settled_state(settings: Settings, settle: float) -> _State:
    """The state, read again (every 0.1 s, for up to ``settle`` s) while files and rows
    disagree: a request in flight may be between its file and its row."""
    deadline = time.monotonic() + settle
    engine = create_engine(engine_url(settings.database_url), poolclass=NullPool)
    try:
        state = _read_state(settings, engine)
        while _half_written(state) and time.monotonic() < deadline:
            time.sleep(0.1)
            state = _read_state(settings, engine)
        return state
    finally:
        engine.dispose()


def _last_word(ops: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The write that decides a pair's state, or None when no single write can."""
    def end(record: Mapping[str, Any]) -> float:
        # No answer at all (a timeout, a reset): the server may apply it at any later time.
        return float(record["t1"]) if record.get("status") else float("inf")

    ops = sorted(ops, key=end)
    last = ops[-1]
    if not last.get("ok"):
        return None
    if any(end(other) > last["t0"] for other in ops[:-1]):
        return None  # in flight together: the server may have applied them in either order
    return last


def check(
    settings: Settings,
    writes: Iterable[Mapping[str, Any]] | str | os.PathLike[str] | None = None,
    *,
    settle: float = SETTLE,
) -> CheckReport:
    """Compare acknowledged ``writes`` (records, or a JSON-lines path) with ``settings``' data."""
    records = read_writes(writes) if isinstance(writes, str | os.PathLike) else list(writes or ())
    state = _settled_state(settings, settle)
    report = CheckReport()
    acked = [r for r in records if r.get("ok")]
    report.checked = {
        "acknowledged writes": len(acked),
        "failed writes": len(records) - len(acked),
        "users": len(state.users),
        "photos": len(state.photos),
        "media files": len(state.files),
    }

    for r in acked:
        if r["op"] == "register" and r["user"] not in state.users:
            report.problem("lost user", f"{r['user']!r} was registered (201) but has no row")

    deleted = {r["photo_id"] for r in acked if r["op"] == "delete_photo"}
    for r in acked:
        if r["op"] != "upload" or r["photo_id"] in deleted:
            continue
        pid, name = r["photo_id"], r.get("filename")
        if pid not in state.photos:
            report.problem("lost photo", f"photo {pid} ({name}) was acknowledged but has no row")
        elif name is not None and state.photos[pid] != name:
            report.problem(
                "wrong photo", f"photo {pid} was stored as {name} but its row says "
                f"{state.photos[pid]}"
            )
    for pid in sorted(deleted):
        if pid in state.photos:
            report.problem("undeleted photo", f"photo {pid} was deleted (200) but its row is there")
    for r in acked:
        if r["op"] == "delete_photo" and r.get("filename") in state.files:
            report.problem(
                "undeleted file", f"photo {r['photo_id']} was deleted but {r['filename']} remains"
            )

    pairs: dict[str, dict[tuple[Any, Any], list[Mapping[str, Any]]]] = {
        "like": defaultdict(list),
        "follow": defaultdict(list),
    }
    for r in records:
        if r["op"] in ("like", "unlike"):
            pairs["like"][(r["user"], r["photo_id"])].append(r)
        elif r["op"] in ("follow", "unfollow"):
            pairs["follow"][(r["user"], r["target"])].append(r)
    decided = 0
    for kind, table in pairs.items():
        present = state.likes if kind == "like" else state.follows
        for key, ops in table.items():
            if kind == "like" and key[1] in deleted:
                continue  # the deletion took its likes along
            last = _last_word(ops)
            if last is None:
                continue
            decided += 1
            wanted = last["op"] == kind
            if wanted and key not in present:
                report.problem(
                    f"lost {kind}", f"{key[0]} -> {key[1]}: {kind} acknowledged, no row"
                )
            elif not wanted and key in present:
                report.problem(
                    f"lost un{kind}", f"{key[0]} -> {key[1]}: un{kind} acknowledged, row remains"
                )
    report.checked["like/follow pairs decided"] = decided

    files_of_rows = set(state.photos.values())
    for pid, name in sorted(state.photos.items()):
        if name not in state.files:
            report.problem("photo row without file", f"photo {pid}: {name} is missing")
    for name in sorted(state.files - files_of_rows):
        report.problem("file without photo row", f"{name} in {settings.media_dir}")
    for name in state.partial:
        report.problem("partial upload", f"{name} in {settings.media_dir}")
    return report


def main_check(settings: Settings, writes: str | None, out: Any = print) -> int:
    """The CLI's ``check``: print the report; 0 when consistent, 1 when not."""
    if writes is not None and not Path(writes).is_file():
        out(f"minigram check: no write log at {writes}")
        return 2
    report = check(settings, writes)
    out(report.summary())
    return 0 if report.ok else 1
