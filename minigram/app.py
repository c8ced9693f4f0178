"""`create_app(settings)`: the routes, the middleware and the lifespan of one Minigram."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.routing import Route

from minigram import metrics
from minigram.api import feed, health, photos, sessions, social, users
from minigram.auth import dummy_hash
from minigram.cache import create_cache
from minigram.cached import Context
from minigram.db import Database
from minigram.errors import EXCEPTION_HANDLERS
from minigram.login_limits import create_limiter
from minigram.media import MediaStore
from minigram.openapi import openapi_json
from minigram.security import BodyGuardMiddleware, SecurityHeadersMiddleware
from minigram.settings import Settings
from minigram.shedding import LoadShedMiddleware
from minigram.timing import ServerTimingMiddleware

ROUTES = [
    Route("/api/register", users.register, methods=["POST"], name="register"),
    Route("/api/login", sessions.login, methods=["POST"], name="login"),
    Route("/api/logout", sessions.logout, methods=["POST"], name="logout"),
    Route("/api/logout/all", sessions.logout_all, methods=["POST"], name="logout_all"),
    Route("/api/photos", photos.upload, methods=["POST"], name="upload"),
    Route("/api/photos/{id:int}", photos.photo, methods=["GET"], name="photo"),
    Route("/api/photos/{id:int}", photos.delete_photo, methods=["DELETE"], name="delete_photo"),
    Route("/api/photos/{id:int}/like", social.like, methods=["POST"], name="like"),
    Route("/api/photos/{id:int}/like", social.unlike, methods=["DELETE"], name="unlike"),
    Route("/api/feed", feed.feed, methods=["GET"], name="feed"),
    Route("/api/users/{name}", users.profile, methods=["GET"], name="profile"),
    Route("/api/users/{name}", users.delete_user, methods=["DELETE"], name="delete_user"),
    Route("/api/users/{name}/follow", social.follow, methods=["POST"], name="follow"),
    Route("/api/users/{name}/follow", social.unfollow, methods=["DELETE"], name="unfollow"),
    Route("/media/{name}", photos.media, methods=["GET"], name="media"),
    Route("/healthz", health.healthz, methods=["GET"], name="healthz"),
    Route("/metrics", metrics.metrics_text, methods=["GET"], name="metrics"),
    Route("/metrics.html", metrics.metrics_page, methods=["GET"], name="metrics_html"),
    Route("/openapi.json", openapi_json, methods=["GET"], name="openapi"),
]


def create_app(settings: Settings | None = None) -> Starlette:
    """A Minigram for ``settings`` (default: from the environment).

    The database engine, the cache client and the media directory are made in the lifespan,
    so each uvicorn worker process gets its own.
    """
    settings = settings if settings is not None else Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        media = MediaStore(settings.media_dir)
        media.ensure()
        db = Database(settings)
        cache = create_cache(settings)
        await run_in_threadpool(dummy_hash, settings.bcrypt_rounds)
        app.state.minigram = Context(settings=settings, db=db, cache=cache, media=media)
        app.state.login_limiter = limiter = create_limiter(settings)
        try:
            yield
        finally:
            await limiter.close()
            await cache.close()
            db.dispose()

    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(
                BodyGuardMiddleware,
                max_body=settings.max_upload_bytes + photos.FORM_OVERHEAD,
                timeout=settings.body_timeout,
            ),
            Middleware(ServerTimingMiddleware, faults=settings.faults, observer=metrics.observe),
            Middleware(
                LoadShedMiddleware,
                max_concurrency=settings.max_concurrency,
                max_queue=settings.max_queue,
                queue_timeout=settings.queue_timeout,
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app


def create_app_from_env() -> Starlette:
    """The factory uvicorn's workers call: ``minigram serve`` passes settings as MINIGRAM_*."""
    return create_app(Settings.from_env())
