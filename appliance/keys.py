"""Key hierarchy: master key, SQLCipher key, pseudonyms, per-bucket DEKs.

The only module that touches key bytes. Everything else gets opaque handles
(`Keyring`, `Dek`) whose repr never shows key material.

    passphrase / key file --Argon2id--> master key
        master --HKDF--> SQLCipher raw keys, wrapping key, verifier, audit signing key
        wrapping key --AES-GCM--> DEK(tenant, user, day)
    pseudonym key (HMAC of user ids, sessions, entities, turns): derived from the
        first master key and carried, wrapped under the current one, across rotations,
        so that pseudonyms (erasure, legal holds, linking) never change.

A key rotation is journalled (`rotation.json`: both keyring descriptions and each
master key wrapped under the other), so that whichever credential the operator
gives after a crash, the next open completes it (`appliance.store.rotation`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import SemtraceError, WrongKey

KEYRING_FILE = "keyring.json"
KEYRING_VERSION = 1
NONCE_BYTES = 12
PASSPHRASE_ENV = "SEMTRACE_PASSPHRASE_FILE"
KEY_FILE_ENV = "SEMTRACE_KEY_FILE"
SYSTEMD_CREDENTIAL = "semtrace-passphrase"


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


def _hkdf(master: bytes, purpose: str, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=purpose.encode()).derive(master)


def _argon2(secret: bytes, params: KdfParams) -> bytes:
    kdf = Argon2id(salt=params.salt, length=32, iterations=params.iterations,
                   lanes=params.lanes, memory_cost=params.memory_cost)
    return kdf.derive(secret)


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
        self._db = _hkdf(master, "semtrace/sqlcipher/v1")
        self._keydb = _hkdf(master, "semtrace/sqlcipher-keys/v1")
        # a data dir's first master key derives it; later ones carry it (wrapped)
        self._pseudo = pseudonym_key or _hkdf(master, "semtrace/pseudonym/v1")
        self._wrap = AESGCM(_hkdf(master, "semtrace/wrap/v1"))
        self._verify = _hkdf(master, "semtrace/verify/v1")
        self._sign = _hkdf(master, "semtrace/audit-signing/v1")

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
        aes = AESGCM(_hkdf(self._master, f"semtrace/{purpose}/v1"))
        nonce = os.urandom(NONCE_BYTES)
        return _b64(nonce + aes.encrypt(nonce, secret, purpose.encode()))

    def _open_secret(self, blob_b64: str, purpose: str) -> bytes:
        blob = base64.b64decode(blob_b64)
        aes = AESGCM(_hkdf(self._master, f"semtrace/{purpose}/v1"))
        try:
            return aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], purpose.encode())
        except InvalidTag:
            raise SemtraceError("The keyring file is damaged (a wrapped key does not "
                                "open).") from None

    def pseudonym(self, tenant: str, user_id: str) -> str:
        """Keyed, stable pseudonym of a user id within a tenant."""
        mac = hmac.new(self._pseudo, f"user\0{tenant}\0{user_id}".encode(), hashlib.sha256)
        return "u_" + mac.hexdigest()[:20]

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


# ---------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credential:
    """Where the master secret comes from: a passphrase or a raw key file."""

    kind: str  # "passphrase" | "keyfile"
    secret: Secret

    def material(self) -> bytes:
        return self.secret._b


def _check_private(path: Path, what: str) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SemtraceError(
            f"The {what} {path} is readable by other users; run `chmod 600 {path}` first."
        )


def read_passphrase_file(path: Path) -> Credential:
    """Read a passphrase from a file (first line, trailing newline dropped)."""
    if not path.is_file():
        raise SemtraceError(f"The passphrase file {path} does not exist.")
    _check_private(path, "passphrase file")
    raw = path.read_bytes().split(b"\n", 1)[0].rstrip(b"\r")
    if len(raw) < 8:
        raise SemtraceError(f"The passphrase in {path} is shorter than 8 characters.")
    return Credential("passphrase", Secret(raw))


def read_key_file(path: Path) -> Credential:
    """Read a raw 32-byte master key (binary or 64 hex characters), mode 0600 enforced."""
    if not path.is_file():
        raise SemtraceError(f"The key file {path} does not exist.")
    _check_private(path, "key file")
    raw = path.read_bytes().strip()
    if len(raw) == 64:
        with contextlib.suppress(UnicodeDecodeError, ValueError):
            raw = bytes.fromhex(raw.decode("ascii"))
    if len(raw) != 32:
        raise SemtraceError(f"The key file {path} must hold 32 bytes (or 64 hex characters).")
    return Credential("keyfile", Secret(raw))


def write_key_file(path: Path) -> None:
    """Create a new random key file with mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")


def find_credential(*, passphrase_file: Path | None = None, key_file: Path | None = None,
                    prompt: bool = True) -> Credential:
    """Find the credential: explicit file, environment file, systemd credential, terminal."""
    if key_file is not None:
        return read_key_file(key_file)
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file)
    if os.environ.get(KEY_FILE_ENV):
        return read_key_file(Path(os.environ[KEY_FILE_ENV]))
    if os.environ.get(PASSPHRASE_ENV):
        return read_passphrase_file(Path(os.environ[PASSPHRASE_ENV]))
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / SYSTEMD_CREDENTIAL).is_file():
        return read_passphrase_file(Path(cred_dir) / SYSTEMD_CREDENTIAL)
    if prompt and os.isatty(0):
        import getpass

        value = getpass.getpass("Semtrace passphrase: ").encode()
        if len(value) < 8:
            raise SemtraceError("The passphrase must be at least 8 characters.")
        return Credential("passphrase", Secret(value))
    raise SemtraceError(
        "No passphrase given: use --passphrase-file, --key-file or "
        f"{PASSPHRASE_ENV}, or run on a terminal."
    )


# ---------------------------------------------------------------- keyring file


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _derive(cred: Credential, meta: dict[str, Any]) -> bytes:
    if cred.kind == "passphrase":
        kdf = meta["kdf"]
        params = KdfParams(salt=base64.b64decode(kdf["salt"]), iterations=kdf["iterations"],
                           lanes=kdf["lanes"], memory_cost=kdf["memory_cost"])
        return _argon2(cred.material(), params)
    return _hkdf(cred.material(), "semtrace/keyfile/v1")


def _ring(master: bytes, meta: dict[str, Any]) -> Keyring:
    """The keyring of `master` as `meta` describes it (with its carried pseudonym key)."""
    carried = meta.get("pseudonym_key")
    if not carried:
        return Keyring(master)
    return Keyring(master, Keyring(master)._open_secret(str(carried), "pseudonym-key"))


def _new_meta(cred: Credential, *, carry: Keyring | None = None,
              params: KdfParams | None = None) -> tuple[Keyring, dict[str, Any]]:
    """A fresh master key for `cred` (new salt) and the keyring description to store."""
    meta: dict[str, Any] = {"version": KEYRING_VERSION, "kind": cred.kind}
    if cred.kind == "passphrase":
        params = params or KdfParams(salt=secrets.token_bytes(16))
        meta["kdf"] = {"name": "argon2id", "salt": _b64(params.salt),
                       "iterations": params.iterations, "lanes": params.lanes,
                       "memory_cost": params.memory_cost}
    master = _derive(cred, meta)
    ring = Keyring(master, carry._pseudo if carry is not None else None)
    if carry is not None:
        meta["pseudonym_key"] = ring._seal_secret(carry._pseudo, "pseudonym-key")
    meta["verifier"] = ring.verifier()
    return ring, meta


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write a private JSON file so that a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_keyring(data_dir: Path, cred: Credential, *, params: KdfParams | None = None) -> Keyring:
    """Derive a new master key for `data_dir` and record how to re-derive it (no secret)."""
    path = data_dir / KEYRING_FILE
    if path.exists():
        raise SemtraceError(f"{data_dir} is already initialised.")
    ring, meta = _new_meta(cred, params=params)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh, indent=1)
    return ring


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise SemtraceError(
            f"{path.parent} is not a Semtrace data dir (run `semtrace init`).") from None
    except (OSError, ValueError):
        raise SemtraceError(f"{path} is unreadable or damaged.") from None
    if not isinstance(meta, dict):
        raise SemtraceError(f"{path} is unreadable or damaged.")
    return meta


def _unlock(meta: dict[str, Any], cred: Credential) -> Keyring | None:
    """The keyring `meta` describes if `cred` opens it, else None."""
    if meta.get("kind") != cred.kind:
        return None
    master = _derive(cred, meta)
    if not hmac.compare_digest(Keyring(master).verifier(), str(meta.get("verifier", ""))):
        return None
    return _ring(master, meta)


def open_keyring(data_dir: Path, cred: Credential) -> Keyring:
    """Re-derive the master key of `data_dir`; WrongKey if the credential does not fit."""
    if rotation_pending(data_dir):
        raise SemtraceError("A key rotation was interrupted; opening the data dir with "
                            "either credential completes it.")
    if (data_dir / (KEYRING_FILE + ".rotating")).exists():  # left by earlier versions
        raise SemtraceError(
            "A key rotation was interrupted: if the new credential was already applied, "
            "rename keyring.json.rotating to keyring.json; else delete it.")
    meta = _read_meta(data_dir / KEYRING_FILE)
    ring = _unlock(meta, cred)
    if ring is None:
        if meta.get("kind") != cred.kind:
            raise WrongKey(f"This data dir is opened with a {meta.get('kind')}, "
                           f"not a {cred.kind}.")
        raise WrongKey("Wrong passphrase or key for this data dir; nothing was changed.")
    return ring


# ---------------------------------------------------------------- rotation journal

ROTATION_JOURNAL = "rotation.json"


@dataclass(frozen=True)
class Rotation:
    """An open key rotation: both keyrings and the journal's id."""

    old: Keyring
    new: Keyring
    journal_id: str
    credential: str  # kind of the new credential


def rotation_pending(data_dir: Path) -> bool:
    """True when a key rotation was begun and not finished (its journal exists)."""
    return (data_dir / ROTATION_JOURNAL).exists()


def discard_unbegun_rotation(data_dir: Path) -> None:
    """Remove what a rotation killed before its journal was written left behind."""
    (data_dir / (ROTATION_JOURNAL + ".tmp")).unlink(missing_ok=True)
    (data_dir / (KEYRING_FILE + ".tmp")).unlink(missing_ok=True)


def begin_rotation(data_dir: Path, old: Keyring, new_cred: Credential) -> Rotation:
    """Write the rotation journal (durably) and return both keyrings.

    The journal holds the current and the new keyring descriptions and each master
    key wrapped under the other, so the rotation can be completed with either
    credential. Nothing else is changed yet.
    """
    if rotation_pending(data_dir):
        raise SemtraceError("A key rotation is already in progress.")
    old_meta = _read_meta(data_dir / KEYRING_FILE)
    new, new_meta = _new_meta(new_cred, carry=old)
    journal = {"version": 1, "id": secrets.token_hex(8), "old": old_meta, "new": new_meta,
               "new_master": old._seal_secret(new._master, "rotation"),
               "old_master": new._seal_secret(old._master, "rotation")}
    _write_atomic(data_dir / ROTATION_JOURNAL, journal)
    return Rotation(old, new, str(journal["id"]), new_cred.kind)


def resume_rotation(data_dir: Path, cred: Credential) -> Rotation:
    """Both keyrings of an interrupted rotation, from either credential."""
    journal = _read_meta(data_dir / ROTATION_JOURNAL)
    try:
        old_meta, new_meta = journal["old"], journal["new"]
        old = _unlock(old_meta, cred)
        if old is not None:
            new = _ring(old._open_secret(journal["new_master"], "rotation"), new_meta)
        else:
            new_ring = _unlock(new_meta, cred)
            if new_ring is None:
                raise WrongKey("Wrong passphrase or key for this data dir; nothing was "
                               "changed.")
            new = new_ring
            old = _ring(new._open_secret(journal["old_master"], "rotation"), old_meta)
    except (KeyError, TypeError):
        raise SemtraceError(f"{data_dir / ROTATION_JOURNAL} is damaged.") from None
    return Rotation(old, new, str(journal["id"]), str(new_meta.get("kind")))


def install_rotated_keyring(data_dir: Path) -> None:
    """Make the journal's new keyring description the data dir's (atomic)."""
    journal = _read_meta(data_dir / ROTATION_JOURNAL)
    _write_atomic(data_dir / KEYRING_FILE, journal["new"])


def end_rotation(data_dir: Path) -> None:
    """Remove the journal: the rotation is complete."""
    (data_dir / ROTATION_JOURNAL).unlink(missing_ok=True)
    fsync_dir(data_dir)


# ---------------------------------------------------------------- reveal (compliance) key

REVEAL_PUBLIC_FILE = "reveal.pub"
REVEAL_PRIVATE_FILE = "reveal-key.json"


def _x25519_pub(raw: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    return X25519PublicKey.from_public_bytes(raw)


def _seal_key(shared: bytes, eph_pub: bytes, pub: bytes) -> AESGCM:
    return AESGCM(_hkdf(shared + eph_pub + pub, "semtrace/reveal/v1"))


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


def create_reveal_key(data_dir: Path, compliance: Credential,
                      keyring: Keyring | None = None) -> None:
    """Create the compliance key pair: public key in clear (tagged by `keyring`, so a
    substituted file is refused), private key under the credential."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    if (data_dir / REVEAL_PRIVATE_FILE).exists():
        raise SemtraceError("A compliance key already exists for this data dir.")
    priv = X25519PrivateKey.generate()
    raw = priv.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    pub = priv.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
    params = KdfParams(salt=secrets.token_bytes(16))
    wrap = AESGCM(_argon2(compliance.material(), params))
    nonce = os.urandom(NONCE_BYTES)
    meta = {"version": 1, "kdf": {"name": "argon2id", "salt": _b64(params.salt),
                                  "iterations": params.iterations, "lanes": params.lanes,
                                  "memory_cost": params.memory_cost},
            "nonce": _b64(nonce), "ct": _b64(wrap.encrypt(nonce, raw, b"semtrace-reveal")),
            "public": _b64(pub)}
    fd = os.open(data_dir / REVEAL_PRIVATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh, indent=1)
    (data_dir / REVEAL_PUBLIC_FILE).write_text(_b64(pub) + "\n")
    if keyring is not None:
        tag_reveal_key(data_dir, keyring)


def tag_reveal_key(data_dir: Path, keyring: Keyring) -> None:
    """Add the keyring's tag to reveal.pub (at enrolment; retag_reveal_key for a file
    written before tags existed). Replaced by rename: never half-written."""
    path = data_dir / REVEAL_PUBLIC_FILE
    pub = _reveal_public(path)[0]
    side = path.with_name(path.name + ".tmp")
    side.write_text(f"{_b64(pub)}\ntag {keyring.tag(REVEAL_PUBLIC_FILE, pub)}\n")
    with open(side, "rb") as fh:
        os.fsync(fh.fileno())
    side.replace(path)
    fsync_dir(data_dir)


def _reveal_public(path: Path) -> tuple[bytes, str | None]:
    """The public key in reveal.pub and its tag (None for a file written before tags)."""
    words = path.read_text().split()
    try:
        pub = base64.b64decode(words[0], validate=True)
    except (IndexError, ValueError):
        raise SemtraceError(f"{path} is damaged; nothing was written.") from None
    if "tag" not in words:
        return pub, None
    at = words.index("tag") + 1
    return pub, words[at] if at < len(words) else ""


def reveal_tag_ok(data_dir: Path, keyring: Keyring) -> bool | None:
    """Whether reveal.pub carries this keyring's tag (None: no compliance key enrolled)."""
    path = data_dir / REVEAL_PUBLIC_FILE
    if not path.exists():
        return None
    pub, tag = _reveal_public(path)
    return tag is not None and hmac.compare_digest(tag, keyring.tag(REVEAL_PUBLIC_FILE, pub))


def retag_reveal_key(data_dir: Path, keyring: Keyring, compliance: Credential) -> bool:
    """Tag reveal.pub again (a file written before tags existed), once the compliance
    credential proves it is the public half of the enrolled private key: a key swapped
    in by someone who can write the data dir is never blessed. Returns whether the file
    changed (False: it already carried the right tag)."""
    path = data_dir / REVEAL_PUBLIC_FILE
    if not path.exists():
        raise SemtraceError("No compliance key is enrolled for this data dir.")
    opener = unlock_reveal_key(data_dir, compliance)
    pub, _ = _reveal_public(path)
    if not opener.is_pair_of(pub):
        raise SemtraceError(f"{path} is not the public half of the enrolled compliance key; "
                            "nothing was changed. Restore it from a backup.")
    if reveal_tag_ok(data_dir, keyring):
        return False
    tag_reveal_key(data_dir, keyring)
    return True


def reveal_sealer(data_dir: Path, keyring: Keyring | None = None) -> RevealSealer | None:
    """The sealer for new vault entries, or None when no compliance key is enrolled.

    With `keyring`, reveal.pub must carry its tag: a public key swapped in by someone
    who can write the data dir would otherwise receive every original from then on.
    """
    path = data_dir / REVEAL_PUBLIC_FILE
    if not path.exists():
        return None
    pub, tag = _reveal_public(path)
    if keyring is not None:
        if tag is None:
            raise SemtraceError(f"{path} carries no tag (enrolled by an earlier version); "
                                "nothing was written. Run `semtrace compliance retag` with "
                                "the compliance passphrase.")
        if not hmac.compare_digest(tag, keyring.tag(REVEAL_PUBLIC_FILE, pub)):
            raise SemtraceError(f"{path} is not the compliance key this appliance enrolled "
                                "(its tag does not match); nothing was written. Restore it "
                                "from a backup.")
    return RevealSealer(pub)


def unlock_reveal_key(data_dir: Path, compliance: Credential) -> RevealOpener:
    """Unlock the compliance private key; AccessDenied-style WrongKey if the credential is wrong."""
    path = data_dir / REVEAL_PRIVATE_FILE
    if not path.exists():
        raise SemtraceError("No compliance key is enrolled for this data dir.")
    meta = json.loads(path.read_text())
    kdf = meta["kdf"]
    params = KdfParams(salt=base64.b64decode(kdf["salt"]), iterations=kdf["iterations"],
                       lanes=kdf["lanes"], memory_cost=kdf["memory_cost"])
    wrap = AESGCM(_argon2(compliance.material(), params))
    try:
        raw = wrap.decrypt(base64.b64decode(meta["nonce"]), base64.b64decode(meta["ct"]),
                           b"semtrace-reveal")
    except InvalidTag:
        raise WrongKey("The compliance credential is wrong; nothing was revealed.") from None
    return RevealOpener(raw)
