"""The compliance (reveal) key pair's crypto: seal to its public key, open with its private
key (X25519 + HKDF + AES-GCM; pure, no I/O)."""

from __future__ import annotations

import hmac
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import SemtraceError
from appliance.keys.derive import NONCE_BYTES, hkdf


def _x25519_pub(raw: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    return X25519PublicKey.from_public_bytes(raw)


def _seal_key(shared: bytes, eph_pub: bytes, pub: bytes) -> AESGCM:
    return AESGCM(hkdf(shared + eph_pub + pub, "semtrace/reveal/v1"))


class RevealSealer:
    """Encrypts vault entries to the compliance public key (anyone may seal)."""

    __slots__ = ("_pub",)

    def __init__(self, public_raw: bytes) -> None:
        self._pub = public_raw

    def seal(self, data: bytes, aad: bytes) -> bytes:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        eph = X25519PrivateKey.generate()
        eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        nonce = os.urandom(NONCE_BYTES)
        aes = _seal_key(eph.exchange(_x25519_pub(self._pub)), eph_pub, self._pub)
        return eph_pub + nonce + aes.encrypt(nonce, data, aad)


class RevealOpener:
    """The compliance role's private key, unlocked by its own passphrase."""

    __slots__ = ("_priv", "_pub")

    def __init__(self, private_raw: bytes) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        self._priv = X25519PrivateKey.from_private_bytes(private_raw)
        self._pub = self._priv.public_key().public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw)

    def __repr__(self) -> str:
        return "<RevealOpener>"

    def is_pair_of(self, public_raw: bytes) -> bool:
        """Whether `public_raw` is this private key's public half."""
        return hmac.compare_digest(self._pub, public_raw)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        eph_pub, nonce, ct = blob[:32], blob[32:32 + NONCE_BYTES], blob[32 + NONCE_BYTES:]
        aes = _seal_key(self._priv.exchange(_x25519_pub(eph_pub)), eph_pub, self._pub)
        try:
            return aes.decrypt(nonce, ct, aad)
        except InvalidTag as exc:
            raise SemtraceError("A vault entry failed its integrity check.") from exc
