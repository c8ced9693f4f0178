"""``minigram serve | db upgrade | seed | check``.

Flags override ``MINIGRAM_*`` environment variables, which override the stage's defaults.
This module imports neither the app nor prometheus_client at import time: ``serve`` must set
``PROMETHEUS_MULTIPROC_DIR`` before either is loaded.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from minigram.settings import STAGES, Settings


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", choices=STAGES, help="Architecture stage (default: 1)")
    parser.add_argument("--data-dir", help="Where the SQLite file and media/ live")
    parser.add_argument("--media-dir", help="Where photo files are stored")
    parser.add_argument("--database-url", help="SQLAlchemy URL of the database")
    parser.add_argument("--redis-url", help="Redis URL (stage 2)")
    parser.add_argument("--redis-prefix", help="Prefix of every Redis key the app uses")
    parser.add_argument("--bcrypt-rounds", type=int, help="bcrypt cost factor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minigram", description="Minigram, the app under test")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="Upgrade the database and serve the app")
    _common(serve)
    serve.add_argument("--host", help="Address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="Port to bind (default: 8000)")
    serve.add_argument("--workers", type=int, help="Worker processes (stage 2; default: cores)")
    serve.add_argument("--pool-size", type=int, help="Database pool size per worker")
    serve.add_argument("--max-upload-bytes", type=int, help="Largest accepted photo")
    serve.add_argument("--faults", help="Fault injection, e.g. 'feed:delay=25%%;login:cpu=5ms'")
    serve.add_argument(
        "--max-concurrency", type=int, help="Requests in progress per worker; 0 never sheds"
    )
    serve.add_argument("--max-queue", type=int, help="Requests waiting for a slot per worker")
    serve.add_argument(
        "--queue-timeout", type=float, help="Seconds a request waits for a slot before a 503"
    )
    serve.add_argument(
        "--http", choices=("httptools", "h11"), help="HTTP/1.1 parser (default: httptools)"
    )
    serve.add_argument("--log-level", default="warning", help="uvicorn log level")
    serve.add_argument("--access-log", action="store_true", help="Log every request")

    db = commands.add_parser("db", help="Database schema commands")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="Apply the migrations (idempotent)")
    _common(upgrade)

    check = commands.add_parser(
        "check", help="Check that acknowledged writes are stored and no photo is half-written"
    )
    _common(check)
    check.add_argument(
        "--writes", help="JSON-lines log of the writes a load run made (its write_log param)"
    )

    seed = commands.add_parser("seed", help="Load generated users, follows, photos and likes")
    _common(seed)
    seed.add_argument("--users", type=int, required=True, help="Number of seed_user_<i> users")
    seed.add_argument("--photos", type=int, required=True, help="Number of photos")
    seed.add_argument("--likes", type=int, help="Number of likes (default: one per photo)")
    seed.add_argument("--reset", action="store_true", help="Delete all rows and media first")
    seed.add_argument("--seed", type=int, default=42, help="Random seed")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    fields = (
        "stage",
        "data_dir",
        "media_dir",
        "database_url",
        "redis_url",
        "redis_prefix",
        "bcrypt_rounds",
        "host",
        "port",
        "workers",
        "pool_size",
        "max_upload_bytes",
        "faults",
        "max_concurrency",
        "max_queue",
        "queue_timeout",
        "http",
    )
    overrides: dict[str, Any] = {name: getattr(args, name, None) for name in fields}
    return Settings.from_env(**overrides)


def serve(settings: Settings, *, log_level: str = "warning", access_log: bool = False) -> int:
    from minigram import db

    db.upgrade(settings)
    os.environ.update(settings.to_env())
    multiproc_dir = None
    if settings.workers > 1 or settings.stage == "2":
        # Before any process imports prometheus_client: workers inherit it and write there.
        multiproc_dir = tempfile.mkdtemp(prefix="minigram-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
    try:
        import uvicorn

        from minigram.http_guard import protocol_for

        print(
            f"minigram stage {settings.stage} on http://{settings.host}:{settings.port} "
            f"({settings.workers} worker{'s' if settings.workers > 1 else ''})",
            flush=True,
        )
        uvicorn.run(
            "minigram.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers if settings.workers > 1 else None,
            log_level=log_level,
            access_log=access_log,
            timeout_graceful_shutdown=5,
            # bounded request heads, a head timer and the idle keep-alive timeout
            http=protocol_for(settings),
            timeout_keep_alive=settings.keepalive_timeout,  # type: ignore[arg-type]
        )
    finally:
        if multiproc_dir is not None:
            shutil.rmtree(multiproc_dir, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.command == "serve":
        return serve(settings, log_level=args.log_level, access_log=args.access_log)
    if args.command == "db":
        from minigram import db

        db.upgrade(settings)
        print(f"database at head: {_redacted(settings.database_url)}")
        return 0
    if args.command == "check":
        from minigram.check import main_check

        return main_check(settings, args.writes)
    if args.command == "seed":
        from minigram.seed import seed

        for name in ("users", "photos", "likes"):
            value = getattr(args, name)
            if value is not None and value < 0:
                parser.error(f"--{name} must not be negative")
        seed(
            settings,
            args.users,
            args.photos,
            args.likes,
            reset=args.reset,
            rng_seed=args.seed,
            out=lambda line: print(line, flush=True),
        )
        return 0
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2  # pragma: no cover


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
