"""The protocol: a few named messages, JSON over an authenticated connection.

Worker to controller: ``join``, ``pong``, ``collected``, ``ask``, ``arrive``, ``started``,
``delta``, ``done``, ``error``, ``bye``. Controller to worker: ``welcome``, ``refused``,
``ping``, ``answer``, ``start``, ``stop``, ``merged``, ``failed``. Both ways: ``heartbeat``.

One load call of one perf test is identified by a :data:`LoadKey`, ``(test id, call index)``;
every message about a load carries it, so two loads never mix. Times are wall-clock seconds
(``time.time()``) of the *receiver's* clock when the controller sends them (``start.start_at``)
and of the sender's clock when a worker sends them (``started.at``, ``pong.clock``).

Bodies are JSON objects with a ``type`` field; :func:`decode` checks names and field types, so
a malformed message is a :class:`ProtocolError`, never a half-read state.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from pytest_minigram.coordination.errors import ProtocolError

__all__ = [
    "PROTOCOL",
    "Answer",
    "Arrive",
    "Ask",
    "Bye",
    "Collected",
    "Delta",
    "Done",
    "Error",
    "Failed",
    "Heartbeat",
    "Join",
    "LoadKey",
    "Merged",
    "Message",
    "Ping",
    "Pong",
    "Refused",
    "Start",
    "Started",
    "Stop",
    "Welcome",
    "decode",
    "encode",
    "format_key",
]

PROTOCOL = 1

LoadKey = tuple[str, int]
"""One load call: (test id, index of the load call within the test)."""


def format_key(key: LoadKey) -> str:
    test, call = key
    return f"{test} [load #{call}]"


@dataclass(frozen=True, slots=True)
class Join:
    """Worker -> controller, first message: who I am."""

    TYPE: ClassVar[str] = "join"
    worker: str
    protocol: int = PROTOCOL
    pid: int = 0  # informational only: nothing depends on another machine's pids
    host: str = ""


@dataclass(frozen=True, slots=True)
class Welcome:
    """Controller -> worker: joined; the heartbeat figures to use."""

    TYPE: ClassVar[str] = "welcome"
    heartbeat: float
    missed: int


@dataclass(frozen=True, slots=True)
class Refused:
    """Controller -> worker: not joined (duplicate id, protocol version); then closes."""

    TYPE: ClassVar[str] = "refused"
    reason: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Both ways, once a second when nothing else was sent."""

    TYPE: ClassVar[str] = "heartbeat"


@dataclass(frozen=True, slots=True)
class Ping:
    """Controller -> worker: a clock probe; answer at once with :class:`Pong`."""

    TYPE: ClassVar[str] = "ping"
    seq: int


@dataclass(frozen=True, slots=True)
class Pong:
    """Worker -> controller: my clock when the probe ``seq`` came in."""

    TYPE: ClassVar[str] = "pong"
    seq: int
    clock: float


@dataclass(frozen=True, slots=True)
class Arrive:
    """Worker -> controller: I reached this load call; give me my share and the start."""

    TYPE: ClassVar[str] = "arrive"
    key: LoadKey
    expected_duration: float | None = None
    health_urls: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # what a live view shows (stage...)


@dataclass(frozen=True, slots=True)
class Start:
    """Controller -> worker: run share ``index`` of ``count`` at ``start_at`` (your clock).

    ``done_within``: seconds from now until the controller gives up waiting for the results.
    """

    TYPE: ClassVar[str] = "start"
    key: LoadKey
    index: int
    count: int
    start_at: float
    participants: list[str]
    done_within: float


@dataclass(frozen=True, slots=True)
class Stop:
    """Controller -> worker: end this load now, cleanly, and send the partial result (someone
    stopped it from the live page); the merged result then says ``stopped``."""

    TYPE: ClassVar[str] = "stop"
    key: LoadKey
    reason: str


@dataclass(frozen=True, slots=True)
class Started:
    """Worker -> controller: the load really started at ``at`` (my clock)."""

    TYPE: ClassVar[str] = "started"
    key: LoadKey
    at: float


@dataclass(frozen=True, slots=True)
class Delta:
    """Worker -> controller: one second of the load, a ``Result.timeseries`` row.

    ``row`` has ``t`` (0, 1, 2... seconds since *my* start), ``requests``, ``errors``,
    ``users``, ``histogram`` (encoded HdrHistogram of that second's latencies, or None) and
    optionally ``actions`` (``{name: {"count": n, "errors": e}}`` for that second).
    """

    TYPE: ClassVar[str] = "delta"
    key: LoadKey
    row: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Done:
    """Worker -> controller: my partial ``Result.to_dict()``, without its time series."""

    TYPE: ClassVar[str] = "done"
    key: LoadKey
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Error:
    """Worker -> controller: this test (or one load of it) failed or errored on me."""

    TYPE: ClassVar[str] = "error"
    test: str
    message: str
    key: LoadKey | None = None


@dataclass(frozen=True, slots=True)
class Merged:
    """Controller -> worker: the merged ``Result.to_dict()`` every worker judges."""

    TYPE: ClassVar[str] = "merged"
    key: LoadKey
    result: dict[str, Any]
    stopped: str = ""  # why the controller stopped it early, when it did


@dataclass(frozen=True, slots=True)
class Failed:
    """Controller -> worker: the verdict of this load is failed, for everyone; stop it."""

    TYPE: ClassVar[str] = "failed"
    key: LoadKey
    reason: str
    workers: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Collected:
    """Worker -> controller, after collection: the perf tests this worker will run."""

    TYPE: ClassVar[str] = "collected"
    perf: list[str]


@dataclass(frozen=True, slots=True)
class Ask:
    """Worker -> controller: what the controller provides under ``name`` (a server it started
    once for every worker, say); answered by ``answer`` with the same ``seq``."""

    TYPE: ClassVar[str] = "ask"
    seq: int
    name: str


@dataclass(frozen=True, slots=True)
class Answer:
    """Controller -> worker: the value provided under ``name``, or why there is none."""

    TYPE: ClassVar[str] = "answer"
    seq: int
    name: str
    value: Any = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Bye:
    """Worker -> controller: I am leaving cleanly."""

    TYPE: ClassVar[str] = "bye"


Message = (Join | Welcome | Refused | Heartbeat | Ping | Pong | Arrive | Start | Stop | Started
           | Delta | Done | Error | Merged | Failed | Collected | Ask | Answer | Bye)

_CLASSES: dict[str, type[Any]] = {
    cls.TYPE: cls for cls in (Join, Welcome, Refused, Heartbeat, Ping, Pong, Arrive, Start,
                              Stop, Started, Delta, Done, Error, Merged, Failed, Collected, Ask,
                              Answer, Bye)
}
# field name -> type hint, per message class
_HINTS: dict[type[Any], dict[str, Any]] = {
    cls: {f.name: get_type_hints(cls)[f.name] for f in fields(cls)} for cls in _CLASSES.values()
}


def encode(msg: Message) -> bytes:
    body: dict[str, Any] = {"type": msg.TYPE}
    for name in _HINTS[type(msg)]:
        body[name] = getattr(msg, name)
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def decode(data: bytes) -> Message:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not a JSON message: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("a message must be a JSON object")
    kind = body.pop("type", None)
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    hints = _HINTS[cls]
    unknown = sorted(set(body) - set(hints))
    if unknown:
        raise ProtocolError(f"{kind}: unknown field(s) {', '.join(unknown)}")
    values = {name: _coerce(hints[name], value, f"{kind}.{name}") for name, value in body.items()}
    try:
        msg: Message = cls(**values)
    except TypeError as exc:  # a required field is missing
        raise ProtocolError(f"{kind}: {exc}") from None
    return msg


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(opt for opt in options if opt is not type(None))
        origin = get_origin(hint)
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int or hint is str:
        if isinstance(value, hint) and not isinstance(value, bool):
            return value
    elif origin is tuple:  # LoadKey
        if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
                and isinstance(value[1], int) and not isinstance(value[1], bool)):
            return (value[0], value[1])
    elif origin is list:
        (item,) = get_args(hint)
        if isinstance(value, list):
            return [_coerce(item, v, where) for v in value]
    elif origin is dict:
        if isinstance(value, dict):
            return value
    raise ProtocolError(f"{where}: expected {_name(hint)}, got {type(value).__name__}")


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
