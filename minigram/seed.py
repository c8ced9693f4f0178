"""``minigram seed``: realistic data, fast.

* Users are ``seed_user_<i>`` for i in 0..N-1, all with the password ``seedpass123``; they share
  one bcrypt hash made once per run, at the configured cost (so seeding takes seconds, and a
  seeded login costs what a real one does).
* The follow graph has a few popular accounts: ``seed_user_0`` .. ``seed_user_4`` are followed
  by 90 %, 80 %, 70 %, 60 % and 50 % of users; everyone also follows a handful of others,
  mildly skewed towards low indexes.
* Photos are small generated images. A handful of distinct images are drawn once; every photo
  row then gets its own stored file, a hard link to one of them (a copy where the filesystem
  cannot link), so each row's file can be served and deleted on its own.
* Rows go in with PostgreSQL ``COPY`` (through a staging table, so reruns skip what exists) or
  SQLite ``executemany`` in one transaction. Seeding again adds only what is missing; with
  ``reset`` everything is deleted first.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.pool import NullPool

from minigram import db, queries
from minigram.auth import hash_password
from minigram.media import NAME_RE, MediaStore
from minigram.models import follows, likes, photos, tokens, users
from minigram.settings import Settings

SEED_PASSWORD = "seedpass123"
POPULAR = (0.9, 0.8, 0.7, 0.6, 0.5)
WORDS = (
    "sunset beach coffee city night friends dog cat mountain lake morning brunch street "
    "art rain snow forest road trip concert garden books bike river market"
).split()

Printer = Callable[[str], None]


def username(i: int) -> str:
    return f"seed_user_{i}"


#: Matches seeded usernames only (``_`` is a LIKE wildcard, hence the escapes).
SEEDED = users.c.username.like("seed\\_user\\_%", escape="\\")


def make_images(directory: Path, count: int = 8) -> list[tuple[Path, str, int]]:
    """Draw ``count`` small distinct images; (path, content type, size) of each."""
    directory.mkdir(parents=True, exist_ok=True)
    formats = [("JPEG", "jpg", "image/jpeg")] * 5 + [
        ("PNG", "png", "image/png"),
        ("GIF", "gif", "image/gif"),
        ("WEBP", "webp", "image/webp"),
    ]
    made = []
    rng = random.Random(7)
    for i in range(count):
        fmt, ext, content_type = formats[i % len(formats)]
        image = Image.new("RGB", (96, 96), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x0, y0 = rng.randrange(80), rng.randrange(80)
            box = (x0, y0, x0 + rng.randrange(8, 40), y0 + rng.randrange(8, 40))
            draw.ellipse(box, fill=tuple(rng.randrange(256) for _ in range(3)))
        path = directory / f"template-{i}.{ext}"
        image.save(path, fmt)
        made.append((path, content_type, path.stat().st_size))
    return made


def _seeded_photos() -> Any:
    return select(photos.c.id).join(users, users.c.id == photos.c.owner_id).where(SEEDED)


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _store(template: Path, target: Path) -> None:
    try:
        os.link(template, target)
    except OSError:
        shutil.copyfile(template, target)


def _copy_rows(
    engine: Engine, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """PostgreSQL: COPY ``rows`` into a staging table, then insert what does not exist yet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(row)
    buffer.seek(0)
    cols = ", ".join(columns)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(
            f"CREATE TEMP TABLE staging (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        cursor.copy_expert(f"COPY staging ({cols}) FROM STDIN WITH (FORMAT csv)", buffer)
        cursor.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM staging ON CONFLICT DO NOTHING"
        )
        raw.commit()
    finally:
        raw.close()


def _insert_rows(
    engine: Engine, table: Any, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    if engine.dialect.name == "postgresql":
        _copy_rows(engine, table.name, columns, rows)
        return
    from sqlalchemy.dialects.sqlite import insert

    batch = [dict(zip(columns, row, strict=True)) for row in rows]
    if batch:
        with engine.begin() as conn:
            conn.execute(insert(table).on_conflict_do_nothing(), batch)


def _reset(engine: Engine, media: MediaStore) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE likes, follows, photos, tokens, users RESTART IDENTITY"))
        else:
            for table in (likes, follows, photos, tokens, users):
                conn.execute(table.delete())
    if media.directory.is_dir():
        for entry in os.scandir(media.directory):
            if NAME_RE.match(entry.name):
                os.unlink(entry.path)


def seed(
    settings: Settings,
    n_users: int,
    n_photos: int,
    n_likes: int | None = None,
    *,
    reset: bool = False,
    rng_seed: int = 42,
    out: Printer = print,
) -> dict[str, int]:
    """Load ``n_users`` users, ``n_photos`` photos and ``n_likes`` likes (default: one per
    photo) into the stage's database. Returns how many of each were added."""
    started = time.perf_counter()
    rng = random.Random(rng_seed)
    like_rng = random.Random(rng_seed + 1)  # its own stream, so a rerun draws the same likes
    n_likes = n_photos if n_likes is None else n_likes
    db.upgrade(settings)
    engine = create_engine(db.engine_url(settings.database_url), poolclass=NullPool)
    media = MediaStore(settings.media_dir)
    media.ensure()
    added = {"users": 0, "follows": 0, "photos": 0, "likes": 0}
    try:
        if reset:
            _reset(engine, media)
            out("reset: deleted every row and stored media file")

        # --- users ---------------------------------------------------------------------
        t0 = time.perf_counter()
        with engine.connect() as conn:
            existing = set(conn.execute(select(users.c.username).where(SEEDED)).scalars())
        wanted = [username(i) for i in range(n_users)]
        new = [name for name in wanted if name not in existing]
        shared_hash = hash_password(SEED_PASSWORD, settings.bcrypt_rounds)
        now = queries.utcnow()
        _insert_rows(
            engine,
            users,
            ("username", "password_hash", "created_at"),
            (
                (name, shared_hash, now - dt.timedelta(days=60, seconds=-i))
                for i, name in enumerate(new)
            ),
        )
        added["users"] = len(new)
        out(
            f"users: {len(new)} added, {n_users - len(new)} already there "
            f"({time.perf_counter() - t0:.1f}s)"
        )
        with engine.connect() as conn:
            rows = conn.execute(select(users.c.id, users.c.username).where(SEEDED)).all()
        ids_by_name = {row.username: row.id for row in rows}
        ids = [ids_by_name[username(i)] for i in range(n_users)]

        # --- follows -------------------------------------------------------------------
        t0 = time.perf_counter()
        before = _count(engine, follows)
        pairs: set[tuple[int, int]] = set()
        if n_users > 1:
            others = list(range(len(POPULAR), n_users))
            weights = [1 / (rank + 1) ** 0.5 for rank in range(len(others))]
            cumulative = list(itertools.accumulate(weights))
            span = max(1, min(30, n_users // 10))
            for i in range(n_users):
                for top, share in enumerate(POPULAR):
                    if top < n_users and top != i and rng.random() < share:
                        pairs.add((ids[i], ids[top]))
                if others:
                    for j in rng.choices(others, cum_weights=cumulative, k=rng.randint(1, span)):
                        if j != i:
                            pairs.add((ids[i], ids[j]))
        _insert_rows(
            engine,
            follows,
            ("follower_id", "followee_id", "created_at"),
            ((a, b, now) for a, b in sorted(pairs)),
        )
        added["follows"] = _count(engine, follows) - before
        out(f"follows: {added['follows']} added ({time.perf_counter() - t0:.1f}s)")

        # --- photos --------------------------------------------------------------------
        t0 = time.perf_counter()
        with engine.connect() as conn:
            have = conn.execute(_seeded_photos().limit(n_photos)).all() if ids else []
        to_add = max(0, n_photos - len(have)) if ids else 0
        templates = make_images(settings.media_dir / ".seed") if to_add else []
        owner_weights = [1 / (rank + 1) ** 0.3 for rank in range(len(ids))]
        owners = rng.choices(ids, owner_weights, k=to_add) if to_add else []
        photo_rows = []
        step = max(1, to_add // 10)
        for n, owner in enumerate(owners, 1):
            path, content_type, size = templates[n % len(templates)]
            name = media.new_name(path.suffix[1:])
            _store(path, media.directory / name)
            caption = " ".join(rng.sample(WORDS, rng.randint(1, 4)))
            created = now - dt.timedelta(seconds=rng.randrange(30 * 86_400), microseconds=n)
            photo_rows.append((owner, caption, name, content_type, size, created))
            if n % step == 0 or n == to_add:
                out(f"photos: {n}/{to_add} files stored")
        _insert_rows(
            engine,
            photos,
            ("owner_id", "caption", "filename", "content_type", "size", "created_at"),
            photo_rows,
        )
        added["photos"] = to_add
        out(f"photos: {to_add} added, {len(have)} already there ({time.perf_counter() - t0:.1f}s)")

        # --- likes ---------------------------------------------------------------------
        t0 = time.perf_counter()
        with engine.connect() as conn:
            photo_ids = sorted(conn.execute(_seeded_photos()).scalars()) if ids else []
        before = _count(engine, likes)
        like_pairs: set[tuple[int, int]] = set()
        if photo_ids and ids:
            target = min(n_likes, len(photo_ids) * len(ids))
            while len(like_pairs) < target:
                like_pairs.add((like_rng.choice(ids), like_rng.choice(photo_ids)))
        _insert_rows(
            engine,
            likes,
            ("user_id", "photo_id", "created_at"),
            ((u, p, now) for u, p in like_pairs),
        )
        added["likes"] = _count(engine, likes) - before
        out(f"likes: {added['likes']} added ({time.perf_counter() - t0:.1f}s)")

        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE users, follows, photos, likes"))
        out(f"seeded in {time.perf_counter() - started:.1f}s")
        return added
    finally:
        engine.dispose()
