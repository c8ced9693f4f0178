"""Photo files on the local filesystem, under names the server makes up."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

#: Every stored name matches this; anything else (``..``, slashes, other extensions) is refused
#: before the filesystem is touched.
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}\.(jpg|png|gif|webp)$")


class MediaStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def new_name(self, extension: str) -> str:
        return f"{secrets.token_urlsafe(16)}.{extension}"

    def path(self, name: str) -> Path | None:
        """The file of ``name``, or None if the name is not one we could have made."""
        if not NAME_RE.match(name):
            return None
        return self.directory / name

    def save(self, name: str, data: bytes) -> None:
        """Write ``data`` under ``name`` atomically: the name never shows a partial file."""
        path = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def delete(self, name: str) -> None:
        path = self.path(name)
        if path is not None:
            path.unlink(missing_ok=True)
