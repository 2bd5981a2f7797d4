"""The keys derived from one master key: SQLCipher keys, pseudonyms, bucket DEKs (pure).

    master --HKDF--> SQLCipher raw keys, wrapping key, verifier, audit signing key
    wrapping key --AES-GCM--> DEK(tenant, user, day)
    pseudonym key: derived from a data dir's first master key, carried by later ones
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import DamagedFile, SemtraceError
from appliance.keys.derive import NONCE_BYTES, b64, hkdf
from appliance.keys.signing import AuditSigner


class Dek:
    """A per-(tenant, user, day) data-encryption key, usable but not readable."""

    __slots__ = ("_aes",)

    def __init__(self, material: bytes) -> None:
        self._aes = AESGCM(material)

    def __repr__(self) -> str:
        return "<Dek>"

    def seal(self, data: bytes, aad: bytes) -> bytes:
        """Encrypt `data` bound to `aad`; returns nonce || ciphertext."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aes.encrypt(nonce, data, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt what `seal` produced; raises SemtraceError if it was tampered with."""
        try:
            return self._aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise SemtraceError("A stored record failed its integrity check.") from exc


class Keyring:
    """Keys derived from one master key (and the pseudonym key it carries)."""

    __slots__ = ("_master", "_db", "_keydb", "_pseudo", "_wrap", "_verify", "_sign")

    def __init__(self, master: bytes, pseudonym_key: bytes | None = None) -> None:
        self._master = master
        self._db = hkdf(master, "semtrace/sqlcipher/v1")
        self._keydb = hkdf(master, "semtrace/sqlcipher-keys/v1")
        # a data dir's first master key derives it; later ones carry it (wrapped)
        self._pseudo = pseudonym_key or hkdf(master, "semtrace/pseudonym/v1")
        self._wrap = AESGCM(hkdf(master, "semtrace/wrap/v1"))
        self._verify = hkdf(master, "semtrace/verify/v1")
        self._sign = hkdf(master, "semtrace/audit-signing/v1")

    def __repr__(self) -> str:
        return "<Keyring>"

    @classmethod
    def random(cls) -> Keyring:
        """A keyring for an ephemeral store that nobody can reopen."""
        return cls(secrets.token_bytes(32))

    def sqlcipher_key(self, purpose: str = "data") -> str:
        """The raw-key literal for `PRAGMA key` (no PBKDF2 on open): data or key store."""
        return f"x'{(self._keydb if purpose == 'keys' else self._db).hex()}'"

    def verifier(self) -> str:
        """A value that proves a key is right without revealing it."""
        return hmac.new(self._verify, b"semtrace-verifier", hashlib.sha256).hexdigest()

    def pseudonym_id(self) -> str:
        """A fingerprint of the pseudonym key (equal fingerprints: equal pseudonyms)."""
        return hmac.new(self._pseudo, b"semtrace-pseudonym-id", hashlib.sha256).hexdigest()[:16]

    def _seal_secret(self, secret: bytes, purpose: str) -> str:
        aes = AESGCM(hkdf(self._master, f"semtrace/{purpose}/v1"))
        nonce = os.urandom(NONCE_BYTES)
        return b64(nonce + aes.encrypt(nonce, secret, purpose.encode()))

    def _open_secret(self, blob_b64: str, purpose: str) -> bytes:
        blob = base64.b64decode(blob_b64)
        aes = AESGCM(hkdf(self._master, f"semtrace/{purpose}/v1"))
        try:
            return aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], purpose.encode())
        except InvalidTag:
            raise DamagedFile("The keyring file is damaged (a wrapped key does not open): "
                              "restore keyring.json from a backup of the data dir; nothing "
                              "was changed.") from None

    def pseudonym(self, tenant: str, user_id: str) -> str:
        """Keyed, stable pseudonym of a user id within a tenant."""
        mac = hmac.new(self._pseudo, f"user\0{tenant}\0{user_id}".encode(), hashlib.sha256)
        return "u_" + mac.hexdigest()[:20]

    def replay_tag(self, file_digest: bytes) -> str:
        """Keyed tag of a replayed file (its SHA-256) for its default request ids."""
        return hmac.new(self._pseudo, b"replay\0" + file_digest, hashlib.sha256).hexdigest()[:12]

    def erasure_tag(self, request: bytes) -> str:
        """A MAC over an erasure request one node of a cluster asks another to apply, under
        the pseudonym key (shared by the nodes whose pseudonyms agree): NATS credentials
        alone cannot ask for an erasure."""
        return hmac.new(self._pseudo, b"semtrace-erasure-request\0" + request,
                        hashlib.sha256).hexdigest()

    def seal_for_cluster(self, data: bytes, aad: bytes) -> str:
        """Encrypt `data` for another node of the cluster (nodes share the pseudonym key),
        bound to `aad`: what one node asks another through NATS, whose disk is not ours."""
        aes = AESGCM(hkdf(self._pseudo, "semtrace/cluster-request/v1"))
        nonce = os.urandom(NONCE_BYTES)
        return b64(nonce + aes.encrypt(nonce, data, aad))

    def open_from_cluster(self, blob_b64: str, aad: bytes) -> bytes:
        """Decrypt what `seal_for_cluster` produced; SemtraceError if it cannot."""
        try:
            blob = base64.b64decode(blob_b64, validate=True)
            aes = AESGCM(hkdf(self._pseudo, "semtrace/cluster-request/v1"))
            return aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except (InvalidTag, ValueError) as exc:
            raise SemtraceError("A request from another node cannot be read with this "
                                "node's key.") from exc

    def session_key(self, tenant: str, session_id: str) -> str:
        """Keyed hash of a client session id (session ids may embed user ids)."""
        mac = hmac.new(self._pseudo, f"session\0{tenant}\0{session_id}".encode(), hashlib.sha256)
        return "s_" + mac.hexdigest()[:20]

    def audit_signer(self) -> AuditSigner:
        """The appliance's Ed25519 audit-signing key (derived from the master key)."""
        return AuditSigner(self._sign)

    def entity_key(self, tenant: str, value: str) -> str:
        """Keyed digest of a redacted value, so overlap is seen without keeping PII."""
        mac = hmac.new(self._pseudo, f"entity\0{tenant}\0{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:16]

    def turn_key(self, tenant: str, user: str, kind: str, value: str) -> str:
        """Keyed digest, per (tenant, user pseudonym), of a message digest or a response id.

        `kind` is "message" (SHA-256 of a prompt's or answer's content) or "response"
        (a provider's response id): the store keeps only these, never the values.
        """
        mac = hmac.new(self._pseudo, f"turn\0{kind}\0{tenant}\0{user}\0{value}".encode(),
                       hashlib.sha256)
        return mac.hexdigest()[:32]

    def tag(self, purpose: str, data: bytes) -> str:
        """A MAC of `data` under a key that survives rotation: lets the key store vouch for
        a file kept in clear beside it (reveal.pub)."""
        return hmac.new(self._pseudo, purpose.encode() + b"\0" + data,
                        hashlib.sha256).hexdigest()

    def new_dek(self, aad: bytes) -> tuple[Dek, bytes]:
        """A fresh random DEK and its wrapped form (AES-GCM under the wrapping key)."""
        material = secrets.token_bytes(32)
        nonce = os.urandom(NONCE_BYTES)
        return Dek(material), nonce + self._wrap.encrypt(nonce, material, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> Dek:
        """Unwrap a stored DEK."""
        try:
            material = self._wrap.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise SemtraceError("A data key failed its integrity check.") from exc
        return Dek(material)

    def rewrap(self, wrapped: bytes, aad: bytes, new: Keyring) -> bytes:
        """Re-wrap a DEK under another keyring (key rotation)."""
        material = self._wrap.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        nonce = os.urandom(NONCE_BYTES)
        return nonce + new._wrap.encrypt(nonce, material, aad)
