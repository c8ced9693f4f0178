"""Photos: upload, metadata, delete, and the files themselves."""

from __future__ import annotations

from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Message

from minigram import cached, images, queries
from minigram.api._common import (
    authenticate,
    check_text,
    content_length,
    media_type,
    photo_id,
    require_user,
    too_large,
)
from minigram.errors import ApiError, invalid, not_found
from minigram.responses import raw_json

CAPTION_MAX = 2200
#: Room for the multipart framing and the caption on top of the file itself.
FORM_OVERHEAD = 64 * 1024


def _insert(
    conn: Connection, owner_id: int, caption: str, name: str, kind: images.Kind, size: int
) -> tuple[int, str, list[int]]:
    new_id, created = queries.insert_photo(conn, owner_id, caption, name, kind.content_type, size)
    return new_id, queries.iso(created), queries.follower_ids(conn, owner_id)


async def upload(request: Request) -> Response:
    ctx = cached.context(request)
    user = await require_user(request)
    if media_type(request) != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the photo as multipart/form-data")
    limit = ctx.settings.max_upload_bytes
    body_limit = limit + FORM_OVERHEAD
    length = content_length(request)
    if length is not None and length > body_limit:
        raise too_large(limit)

    # Count the body as it streams in and stop at the limit: never buffer an oversized body.
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > body_limit:
                raise too_large(limit)
        return message

    limited = Request(request.scope, receive)
    async with limited.form(max_files=1, max_fields=4, max_part_size=16 * 1024) as form:
        unknown = sorted(set(form.keys()) - {"file", "caption"})
        if unknown:
            raise invalid(unknown[0][:50], "unknown form field; send file and caption")
        for name in ("file", "caption"):
            if len(form.getlist(name)) > 1:
                raise invalid(name, "must be sent at most once")
        upload_file = form.get("file")
        caption = form.get("caption", "")
        if not isinstance(upload_file, UploadFile):
            raise invalid("file", "is required: a multipart file field named 'file'")
        if not isinstance(caption, str):
            raise invalid("caption", "must be text")
        check_text("caption", caption)
        if len(caption) > CAPTION_MAX:
            raise invalid("caption", f"must be at most {CAPTION_MAX} characters")
        if upload_file.size is not None and upload_file.size > limit:
            raise too_large(limit)
        data = await upload_file.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    if not data:
        raise invalid("file", "is empty")
    kind = await run_in_threadpool(images.check, data)

    # File first, then the row; if the row fails, the file goes: never one without the other.
    name = ctx.media.new_name(kind.extension)
    await run_in_threadpool(ctx.media.save, name, data)
    try:
        new_id, created, followers = await ctx.write(
            _insert, user.id, caption, name, kind, len(data)
        )
    except BaseException:
        await run_in_threadpool(ctx.media.delete, name)
        raise
    await cached.photos_changed(ctx, user.username, followers)
    return JSONResponse(
        {
            "id": new_id,
            "owner": user.username,
            "caption": caption,
            "url": f"/media/{name}",
            "content_type": kind.content_type,
            "size": len(data),
            "created_at": created,
            "likes": 0,
            "liked": False,
        },
        status_code=201,
    )


async def photo(request: Request) -> Response:
    ctx = cached.context(request)
    pid = photo_id(request)
    viewer = await authenticate(request, required=False)
    found = await cached.photos_for_viewer(ctx, [pid], viewer.id if viewer else None)
    if not found:
        raise not_found(f"no photo {pid}")
    return raw_json(found[0])


def _delete(conn: Connection, pid: int, user_id: int) -> tuple[str, list[int]]:
    owner = queries.photo_owner(conn, pid)
    if owner is None:
        raise not_found(f"no photo {pid}")
    if owner[0] != user_id:
        raise ApiError(403, "forbidden", "only the owner can delete a photo")
    queries.delete_photo(conn, pid)
    return owner[2], queries.follower_ids(conn, user_id)


async def delete_photo(request: Request) -> Response:
    ctx = cached.context(request)
    user = await require_user(request)
    pid = photo_id(request)
    filename, followers = await ctx.write(_delete, pid, user.id)
    await run_in_threadpool(ctx.media.delete, filename)
    await cached.photos_changed(ctx, user.username, followers, pid)
    return JSONResponse({"deleted": True, "id": pid})


async def media(request: Request) -> Response:
    ctx = cached.context(request)
    name = str(request.path_params["name"])
    path = ctx.media.path(name)
    if path is None or not path.is_file():
        raise not_found(f"no media {name!r}")
    kind = images.KINDS_BY_EXTENSION[name.rsplit(".", 1)[1]]
    return FileResponse(
        path,
        media_type=kind.content_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
