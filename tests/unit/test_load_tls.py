"""https:// targets against a local TLS test server with a throwaway CA (trustme)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from pytest_minigram.load import (
    Closed,
    InsecureTargetWarning,
    Journey,
    Result,
    VirtualUser,
    merge,
    run,
)
from pytest_minigram.load.testserver import ServerProcess

HANDSHAKE_DELAY = 0.5  # seconds the server stalls in every handshake


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _serve(ca: trustme.CA, tmp: Path, *names: str, delay: float = 0.0) -> ServerProcess:
    cert = ca.issue_cert(*names)
    certfile, keyfile = tmp / "cert.pem", tmp / "key.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return ServerProcess(str(certfile), str(keyfile), handshake_delay_ms=delay * 1000)


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[ServerProcess]:
    with _serve(ca, tmp_path_factory.mktemp("tls"), "127.0.0.1",
                delay=HANDSHAKE_DELAY) as srv:
        yield srv


async def _hits(user: VirtualUser) -> None:
    await user.get("/x", name="x")
    await user.post("/echo", json={"a": 1}, name="echo")


JOURNEY = Journey("tls", _hits)


def test_verified_with_the_ca_bundle_and_handshake_timed_apart(
        tls_server: ServerProcess, ca_bundle: Path) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    # one user: the server stalls its whole loop in a handshake, which would delay the
    # requests of a second user
    result = run(Closed(users=1, duration=10.0, iterations=3), JOURNEY, tls_server.url,
                 ca_bundle=ca_bundle)
    assert result.errors == {} and result.count == 6
    # one connection, kept alive: one connect, one handshake
    assert result.connect.count == 1 and result.tls.count == 1
    assert result.tls.percentile(50) >= HANDSHAKE_DELAY * 0.95
    assert result.tls.total >= HANDSHAKE_DELAY * 0.95
    assert result.connect.percentile(100) < HANDSHAKE_DELAY
    # the first request waited for the handshake; its latency does not show it
    assert result.max < HANDSHAKE_DELAY * 0.6, result.max
    data = result.to_dict()["connections"]
    assert data["tls"]["count"] == 1 and data["tls"]["p50"] >= HANDSHAKE_DELAY * 0.95


def test_without_the_ca_the_certificate_is_refused(tls_server: ServerProcess) -> None:
    result = run(Closed(users=1, duration=10.0, iterations=2), JOURNEY, tls_server.url)
    assert set(result.errors) == {"tls"}
    example = result.errors["tls"]["example"]
    assert "certificate verify failed" in example and "127.0.0.1" in example
    assert result.error_rate == 1.0 and result.tls.count == 0


def test_verify_false_accepts_a_self_signed_certificate(tls_server: ServerProcess) -> None:
    with pytest.warns(InsecureTargetWarning, match="verification is off"):
        result = run(Closed(users=1, duration=10.0, iterations=2), JOURNEY, tls_server.url,
                     verify=False)
    assert result.errors == {} and result.count == 4 and result.tls.count == 1


def test_host_name_is_checked(ca: trustme.CA, ca_bundle: Path, tmp_path: Path) -> None:
    with _serve(ca, tmp_path, "other.example") as srv:
        result = run(Closed(users=1, duration=10.0, iterations=1), JOURNEY, srv.url,
                     ca_bundle=ca_bundle)
    assert set(result.errors) == {"tls"}
    assert "mismatch" in result.errors["tls"]["example"].lower()


def test_plain_http_records_connects_but_no_handshakes() -> None:
    with ServerProcess() as srv:
        result = run(Closed(users=3, duration=10.0, iterations=2), JOURNEY, srv.url)
    assert result.errors == {}
    assert result.connect.count == 3 and result.tls.count == 0
    assert result.to_dict()["connections"]["tls"] == {
        "count": 0, "total": 0.0, "histogram": result.tls.to_dict()["histogram"]}


def test_connection_times_round_trip_and_merge(tls_server: ServerProcess,
                                               ca_bundle: Path) -> None:
    parts = [run(Closed(users=1, duration=10.0, iterations=1), JOURNEY, tls_server.url,
                 ca_bundle=ca_bundle) for _ in range(2)]
    back = [Result.from_dict(json.loads(json.dumps(p.to_dict()))) for p in parts]
    for before, after in zip(parts, back, strict=True):
        assert after.tls.count == before.tls.count == 1
        assert after.tls.total == before.tls.total
        assert after.tls.percentile(50) == before.tls.percentile(50)
    merged = merge(back)
    assert merged.tls.count == 2 and merged.connect.count == 2
    assert merged.tls.total == pytest.approx(sum(p.tls.total for p in parts))
    assert merged.to_dict()["connections"]["tls"]["count"] == 2
