"""Which images we accept, judged by their bytes and never by their name."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from minigram.errors import ApiError

#: No accepted image may claim more pixels than this (a decompression-bomb guard; we never
#: decode pixels, but whoever displays the image will).
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class Kind:
    content_type: str
    extension: str
    pil_format: str


JPEG = Kind("image/jpeg", "jpg", "JPEG")
PNG = Kind("image/png", "png", "PNG")
GIF = Kind("image/gif", "gif", "GIF")
WEBP = Kind("image/webp", "webp", "WEBP")

KINDS_BY_EXTENSION = {k.extension: k for k in (JPEG, PNG, GIF, WEBP)}


def sniff(head: bytes) -> Kind | None:
    """The kind named by the file's magic bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None


def check(data: bytes) -> Kind:
    """Return the kind of ``data``, or raise 415 / 422 if it is not an image we accept.

    The magic bytes pick the kind; Pillow must then parse the header as that same format and
    find it consistent. Pixels are never decoded.
    """
    kind = sniff(data[:16])
    if kind is None:
        raise ApiError(415, "unsupported_image", "the file is not a JPEG, PNG, GIF or WebP image")
    try:
        with Image.open(io.BytesIO(data), formats=[kind.pil_format]) as image:
            width, height = image.size
            image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(422, "image_too_large", f"more than {MAX_PIXELS} pixels") from None
    except Exception as exc:  # Pillow raises many kinds on hostile input
        if isinstance(exc, UnidentifiedImageError):
            exc = ValueError("unreadable header")
        raise ApiError(
            422, "invalid_image", f"the file looks like {kind.extension} but is damaged ({exc})"
        ) from None
    if width * height > MAX_PIXELS:
        raise ApiError(422, "image_too_large", f"more than {MAX_PIXELS} pixels")
    return kind
