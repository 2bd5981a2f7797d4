"""The SHA-256 of a file's bytes: the bundled model's checksum, a backup's manifest, the
tag of a replayed file."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: Path) -> bytes:
    """SHA-256 of a whole file, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()
