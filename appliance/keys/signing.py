"""The Ed25519 audit-signing key and signature checks (pure, no I/O)."""

from __future__ import annotations

import base64
import hashlib


class AuditSigner:
    """Signs audit checkpoints and reports; exposes only its public key."""

    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    def __repr__(self) -> str:
        return "<AuditSigner>"

    def public_key_b64(self) -> str:
        from cryptography.hazmat.primitives import serialization

        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def key_id(self) -> str:
        return hashlib.sha256(self.public_key_b64().encode()).hexdigest()[:16]

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._key.sign(data)).decode()


def verify_signature(public_key_b64: str, data: bytes, signature_b64: str) -> bool:
    """Check an Ed25519 signature made by an `AuditSigner`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signature_b64), data)
    except (InvalidSignature, ValueError):
        return False
    return True
