"""Micro-benchmarks of the engine's hot paths (pytest-benchmark); also plain fast tests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pytest_minigram.load import Result, merge
from pytest_minigram.load.client import _Protocol
from pytest_minigram.load.recorder import Recorder

RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 17\r\n"
            b"server-timing: db;dur=1.2, app;dur=3.4\r\n\r\n{\"hello\":\"world\"}")


@pytest.mark.benchmark(group="engine")
def test_record_one_sample(benchmark: Any) -> None:
    rec = Recorder(open_model=True)
    benchmark(rec.record, "feed", 0.0123, 0.001, False)
    assert rec.total.count >= 1 and rec.actions["feed"].count == rec.total.count


@pytest.mark.benchmark(group="engine")
def test_parse_one_response(benchmark: Any) -> None:
    loop = asyncio.new_event_loop()
    try:
        proto = _Protocol()

        def parse() -> None:
            proto.headers = []
            proto.body = []
            proto.server_timing = None
            proto.waiter = loop.create_future()
            proto.data_received(RESPONSE)

        benchmark(parse)
        assert proto.waiter is not None and proto.waiter.done()
        assert proto.parser.get_status_code() == 200 and proto.keep_alive
        assert b"".join(proto.body) == b'{"hello":"world"}'
        assert proto.server_timing == b"db;dur=1.2, app;dur=3.4"
    finally:
        loop.close()


def _partial(seed: int) -> dict[str, Any]:
    rec = Recorder()
    rec.started = 1000.0
    for i in range(2000):
        rec.record(("feed", "like")[i % 2], ((i * 7919 + seed) % 50_000) / 1e6, 0.0, i % 97 == 0)
    rec.tick(4)
    return rec.result(duration=5.0, workload={"model": "closed", "users": 4}, labels={},
                      generator={}, interrupted=False).to_dict()


@pytest.mark.benchmark(group="engine")
def test_merge_two_results(benchmark: Any) -> None:
    a, b = _partial(1), _partial(2)
    merged = benchmark(lambda: merge([Result.from_dict(a), Result.from_dict(b)]))
    assert merged.count == 4000 and merged.workload["users"] == 8
