"""Key hierarchy: master key, SQLCipher key, pseudonyms, per-bucket DEKs.

The only module that touches key bytes. Everything else gets opaque handles
(`Keyring`, `Dek`) whose repr never shows key material.

    passphrase / key file --Argon2id--> master key
        master --HKDF--> SQLCipher raw key, pseudonym key, wrapping key, verifier
        wrapping key --AES-GCM--> DEK(tenant, user, day)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

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
    """Keys derived from one master key."""

    __slots__ = ("_db", "_keydb", "_pseudo", "_wrap", "_verify")

    def __init__(self, master: bytes) -> None:
        self._db = _hkdf(master, "semtrace/sqlcipher/v1")
        self._keydb = _hkdf(master, "semtrace/sqlcipher-keys/v1")
        self._pseudo = _hkdf(master, "semtrace/pseudonym/v1")
        self._wrap = AESGCM(_hkdf(master, "semtrace/wrap/v1"))
        self._verify = _hkdf(master, "semtrace/verify/v1")

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

    def pseudonym(self, tenant: str, user_id: str) -> str:
        """Keyed, stable pseudonym of a user id within a tenant."""
        mac = hmac.new(self._pseudo, f"user\0{tenant}\0{user_id}".encode(), hashlib.sha256)
        return "u_" + mac.hexdigest()[:20]

    def session_key(self, tenant: str, session_id: str) -> str:
        """Keyed hash of a client session id (session ids may embed user ids)."""
        mac = hmac.new(self._pseudo, f"session\0{tenant}\0{session_id}".encode(), hashlib.sha256)
        return "s_" + mac.hexdigest()[:20]

    def entity_key(self, tenant: str, value: str) -> str:
        """Keyed digest of a redacted value, so overlap is seen without keeping PII."""
        mac = hmac.new(self._pseudo, f"entity\0{tenant}\0{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:16]

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
        try:
            raw = bytes.fromhex(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
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


def create_keyring(data_dir: Path, cred: Credential, *, params: KdfParams | None = None) -> Keyring:
    """Derive a new master key for `data_dir` and record how to re-derive it (no secret)."""
    path = data_dir / KEYRING_FILE
    if path.exists():
        raise SemtraceError(f"{data_dir} is already initialised.")
    meta: dict[str, object] = {"version": KEYRING_VERSION, "kind": cred.kind}
    if cred.kind == "passphrase":
        params = params or KdfParams(salt=secrets.token_bytes(16))
        master = _argon2(cred.material(), params)
        meta["kdf"] = {"name": "argon2id", "salt": _b64(params.salt),
                       "iterations": params.iterations, "lanes": params.lanes,
                       "memory_cost": params.memory_cost}
    else:
        master = _hkdf(cred.material(), "semtrace/keyfile/v1")
    ring = Keyring(master)
    meta["verifier"] = ring.verifier()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh, indent=1)
    return ring


def open_keyring(data_dir: Path, cred: Credential) -> Keyring:
    """Re-derive the master key of `data_dir`; WrongKey if the credential does not fit."""
    path = data_dir / KEYRING_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise SemtraceError(f"{data_dir} is not a Semtrace data dir (run `semtrace init`).") from None
    except (OSError, ValueError):
        raise SemtraceError(f"{path} is unreadable or damaged.") from None
    if meta.get("kind") != cred.kind:
        raise WrongKey(f"This data dir is opened with a {meta.get('kind')}, not a {cred.kind}.")
    if cred.kind == "passphrase":
        kdf = meta["kdf"]
        params = KdfParams(salt=base64.b64decode(kdf["salt"]), iterations=kdf["iterations"],
                           lanes=kdf["lanes"], memory_cost=kdf["memory_cost"])
        master = _argon2(cred.material(), params)
    else:
        master = _hkdf(cred.material(), "semtrace/keyfile/v1")
    ring = Keyring(master)
    if not hmac.compare_digest(ring.verifier(), str(meta.get("verifier", ""))):
        raise WrongKey("Wrong passphrase or key for this data dir; nothing was changed.")
    return ring
