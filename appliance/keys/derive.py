"""Key-derivation primitives: Argon2id, HKDF, and the opaque `Secret` (pure, no I/O)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters (RFC 9106 second recommendation by default)."""

    salt: bytes
    iterations: int = 3
    lanes: int = 4
    memory_cost: int = 64 * 1024  # KiB


class Secret:
    """Raw key material with a repr that never shows it."""

    __slots__ = ("_b",)

    def __init__(self, material: bytes) -> None:
        self._b = bytes(material)

    def __repr__(self) -> str:
        return "<Secret>"

    __str__ = __repr__


def hkdf(master: bytes, purpose: str, length: int = 32) -> bytes:
    """HKDF-SHA256 of `master` for one named purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=purpose.encode()).derive(master)


def argon2id(secret: bytes, params: KdfParams) -> bytes:
    """A 32-byte key stretched from a passphrase with Argon2id."""
    kdf = Argon2id(salt=params.salt, length=32, iterations=params.iterations,
                   lanes=params.lanes, memory_cost=params.memory_cost)
    return kdf.derive(secret)


def b64(b: bytes) -> str:
    """Base64 text of `b` (how key files store bytes)."""
    return base64.b64encode(b).decode()
