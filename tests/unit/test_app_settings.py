"""Settings: stage profiles, environment variables, overrides, fault specs; and the small pure
parts (memory cache, feed cursors, image sniffing)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import pytest

from minigram import images, queries
from minigram.cache import MemoryCache
from minigram.settings import Fault, Settings, parse_faults


def test_stage_profiles(tmp_path):
    one = Settings.for_stage("1", data_dir=tmp_path)
    assert one.database_url == f"sqlite:///{tmp_path / 'minigram.db'}"
    assert one.media_dir == tmp_path / "media"
    assert (one.pooled, one.sqlite_wal, one.sqlite_busy_timeout, one.cache_backend) == (
        False,
        False,
        0.0,
        "none",
    )
    assert one.workers == 1 and one.redis_url is None

    mid = Settings.for_stage("1.5", data_dir=tmp_path)
    assert (mid.pooled, mid.sqlite_wal, mid.sqlite_busy_timeout, mid.cache_backend) == (
        True,
        True,
        5.0,
        "memory",
    )

    two = Settings.for_stage(2, data_dir=tmp_path)
    assert two.stage == "2"
    assert two.database_url.startswith("postgresql://")
    assert two.redis_url == "redis://127.0.0.1:6379/0"
    assert two.cache_backend == "redis" and two.pooled
    assert two.workers == (os.cpu_count() or 1)


def test_defaults_match_the_seed():
    settings = Settings.for_stage("1")
    assert settings.bcrypt_rounds == 10
    assert settings.max_upload_bytes == 5 * 1024 * 1024
    assert settings.redis_prefix == "minigram:"
    assert settings.data_dir == Path(".minigram-data").absolute()


def test_from_env_reads_every_variable(tmp_path):
    env = {
        "MINIGRAM_STAGE": "2",
        "MINIGRAM_DATABASE_URL": "postgresql://u@h:1/db",
        "MINIGRAM_REDIS_URL": "redis://h:2/3",
        "MINIGRAM_REDIS_PREFIX": "t:",
        "MINIGRAM_DATA_DIR": str(tmp_path),
        "MINIGRAM_MEDIA_DIR": str(tmp_path / "m"),
        "MINIGRAM_BCRYPT_ROUNDS": "5",
        "MINIGRAM_WORKERS": "3",
        "MINIGRAM_MAX_UPLOAD_BYTES": "1000",
        "MINIGRAM_POOL_SIZE": "7",
        "MINIGRAM_FAULTS": "feed:delay=25%",
        "MINIGRAM_HOST": "0.0.0.0",
        "MINIGRAM_PORT": "8123",
    }
    settings = Settings.from_env(env)
    assert settings == Settings(
        stage="2",
        data_dir=tmp_path,
        media_dir=tmp_path / "m",
        database_url="postgresql://u@h:1/db",
        redis_url="redis://h:2/3",
        redis_prefix="t:",
        host="0.0.0.0",
        port=8123,
        workers=3,
        bcrypt_rounds=5,
        max_upload_bytes=1000,
        pool_size=7,
        faults=(Fault("feed", "delay", fraction=0.25),),
    )
    # and back again, which is how serve hands settings to its workers
    assert Settings.from_env(settings.to_env()) == settings


def test_overrides_beat_the_environment(tmp_path):
    env = {"MINIGRAM_STAGE": "1.5", "MINIGRAM_BCRYPT_ROUNDS": "6", "MINIGRAM_DATA_DIR": "/nope"}
    settings = Settings.from_env(env, bcrypt_rounds=4, data_dir=tmp_path, port=None)
    assert (settings.stage, settings.bcrypt_rounds, settings.data_dir) == ("1.5", 4, tmp_path)
    assert settings.port == 8000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MINIGRAM_STAGE": "3"}, "unknown stage"),
        ({"MINIGRAM_WORKERS": "4"}, "one process"),
        ({"MINIGRAM_BCRYPT_ROUNDS": "2"}, "bcrypt"),
        ({"MINIGRAM_BCRYPT_ROUNDS": "many"}, "MINIGRAM_BCRYPT_ROUNDS"),
        ({"MINIGRAM_POOL_SIZE": "0"}, "pool"),
        ({"MINIGRAM_STAGE": "2", "MINIGRAM_DATABASE_URL": "sqlite:///x.db"}, "PostgreSQL"),
        ({"MINIGRAM_FAULTS": "nowhere:delay=5ms"}, "unknown endpoint"),
    ],
)
def test_bad_settings_raise_a_clear_error(env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_parse_faults():
    assert parse_faults("feed:delay=25%;login:delay=20ms;feed:cpu=5ms; ;*:delay=1s") == (
        Fault("feed", "delay", fraction=0.25),
        Fault("login", "delay", seconds=0.02),
        Fault("feed", "cpu", seconds=0.005),
        Fault("*", "delay", seconds=1.0),
    )
    assert parse_faults("") == ()
    assert Fault("feed", "delay", fraction=0.25).extra(0.1) == pytest.approx(0.025)
    assert Fault("feed", "delay", seconds=0.02).extra(5) == 0.02
    assert str(Fault("login", "cpu", seconds=0.005)) == "login:cpu=5ms"
    for bad in (
        "feed",
        "feed:delay",
        "feed:delay=5",
        "feed:sleep=5ms",
        "feed:cpu=5%",
        "bogus:delay=1ms",
    ):
        with pytest.raises(ValueError, match="bad fault"):
            parse_faults(bad)


def test_memory_cache_expires_and_evicts():
    async def scenario() -> None:
        cache = MemoryCache(max_entries=3)
        await cache.set_many({"a": b"1", "b": b"2"}, ttl=60)
        await cache.set_many({"gone": b"x"}, ttl=-1)
        assert await cache.get_many(["a", "b", "gone", "nope"]) == [b"1", b"2", None, None]
        await cache.bump(["v", "v"])
        assert await cache.get_many(["v"]) == [b"2"]
        await cache.set_many({"c": b"3", "d": b"4"}, ttl=60)  # evicts the least recent
        assert await cache.get_many(["a", "b", "v", "c", "d"]) == [None, None, b"2", b"3", b"4"]
        await cache.delete(["c", "zz"])
        assert await cache.get_many(["c"]) == [None]
        assert (await cache.health())["status"] == "ok"

    asyncio.run(scenario())


def test_feed_cursor_round_trip():
    key = (dt.datetime(2025, 11, 28, 13, 0, 0, 123456), 42)
    cursor = queries.encode_cursor(key)
    assert "=" not in cursor and "|" not in cursor
    assert queries.decode_cursor(cursor) == key
    for bad in ("", "!!", "AAAA", queries.encode_cursor((key[0], 0))):
        with pytest.raises(ValueError):
            queries.decode_cursor(bad)


def test_sniffing_names_the_format_by_magic_bytes():
    assert images.sniff(b"\xff\xd8\xff\xe0") is images.JPEG
    assert images.sniff(b"\x89PNG\r\n\x1a\n") is images.PNG
    assert images.sniff(b"GIF87a") is images.GIF
    assert images.sniff(b"RIFF\x00\x00\x00\x00WEBP") is images.WEBP
    assert images.sniff(b"RIFF\x00\x00\x00\x00WAVE") is None
    assert images.sniff(b"") is None
