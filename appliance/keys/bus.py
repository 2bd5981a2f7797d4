"""The bus key: payloads on NATS sealed with AES-256-GCM, so JetStream stores no plaintext.

A bus key file holds one key per line, `<key id> <key>` (8 and 64 hex
characters); `#` starts a comment. The first key seals; every key opens, so a
key can be rolled without dropping the messages already queued under the old
one (docs/scale-out.md, "Rolling the bus key").

A sealed message is `MAGIC | key id (4 bytes) | nonce (12) | ciphertext + tag`.
The associated data names the direction and the tenant (`ingest_aad`,
`reply_aad`): a message sealed for one tenant does not open on another
tenant's subject, and a request cannot be passed off as a reply. MAGIC starts
with a NUL byte, which no protocol frame may contain, so a sealed message is
never mistaken for a plain one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import ConfigError, InputError, SemtraceError
from appliance.keys.durable import fsync_dir

MAGIC = b"\x00stb1"
KEY_ID_BYTES = 4
NONCE_BYTES = 12
_LINE = re.compile(r"^([0-9a-f]{8})\s+([0-9a-f]{64})$")


# Sealing is the default: a side of the bus without a key refuses to start unless told
# explicitly that plain text is accepted (plain_bus), because JetStream writes every
# message to its file store.
NODE_NEEDS_KEY = ("This node would take prompts from NATS in plain text, which JetStream "
                  "writes to disk: create a bus key with `semtrace cluster bus-key new FILE` "
                  "and set bus_key_file under [security] in cluster.toml (or plain_bus = true "
                  "there to accept plain text).")
GATEWAY_NEEDS_KEY = ("A gateway would publish prompts to NATS in plain text, which JetStream "
                     "writes to disk: give it the cluster's bus key (bus_key_file=, or "
                     "bus_keys= for NatsClient; `semtrace cluster bus-key new FILE` creates "
                     "one), or plain_bus=True to accept plain text.")
PLAIN_BUS_WARNING = ("plain_bus = true: prompts, PII and user ids cross the NATS bus and wait "
                     "in JetStream's store in plain text; set security.bus_key_file to seal "
                     "them.")
ACCEPT_PLAIN_WARNING = ("accept_plain = true: messages that gateways send in plain text are "
                        "taken too, and wait in JetStream's store in plain text; remove it "
                        "once semtrace_cluster_messages_total{outcome=\"plain\"} stops "
                        "growing.")


def bus_warning(plain_bus: bool, accept_plain: bool) -> str:
    """The one warning a node logs as it starts when it takes plain text, else ""."""
    return PLAIN_BUS_WARNING if plain_bus else ACCEPT_PLAIN_WARNING if accept_plain else ""


def require_sealing(has_key: bool, plain_bus: bool, sentence: str) -> None:
    """ConfigError(`sentence`) unless there is a bus key or the explicit plain-text opt-out."""
    if not has_key and not plain_bus:
        raise ConfigError(sentence)


class Unsealed(SemtraceError):
    """A message that cannot be opened; `reason` is "plain", "no_key", "unknown_key",
    "tampered" or "sealed" (sealed, and this side holds no bus key)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def is_sealed(data: bytes) -> bool:
    """Whether a payload is a sealed message (it may still fail to open)."""
    return data.startswith(MAGIC)


def ingest_aad(tenant: str) -> bytes:
    """The associated data of a request on `semtrace.ingest.<tenant>`."""
    return b"semtrace-bus/v1/ingest/" + tenant.encode("utf-8")


def reply_aad(tenant: str) -> bytes:
    """The associated data of a node's answer about a request of `tenant`."""
    return b"semtrace-bus/v1/reply/" + tenant.encode("utf-8")


class BusKeys:
    """Opaque handle on the bus keys: seals with the first, opens with any."""

    def __init__(self, keys: list[tuple[bytes, bytes]]) -> None:
        if not keys:
            raise ConfigError("A bus key file holds no key.")
        self._ciphers = {kid: AESGCM(key) for kid, key in keys}
        self.sealing = keys[0][0]

    def __repr__(self) -> str:
        return f"BusKeys(ids={self.ids()})"

    def ids(self) -> list[str]:
        """The key ids, sealing key first (ids are not secret)."""
        return [kid.hex() for kid in self._ciphers]

    def seal(self, data: bytes, aad: bytes, *, key_id: bytes | None = None) -> bytes:
        """`data` sealed under the sealing key (or `key_id`, to answer in a request's key)."""
        kid = key_id or self.sealing
        nonce = secrets.token_bytes(NONCE_BYTES)
        return MAGIC + kid + nonce + self._ciphers[kid].encrypt(nonce, data, aad)

    def open(self, data: bytes, aad: bytes) -> tuple[bytes, bytes]:
        """(plaintext, key id) of a sealed message; Unsealed with one sentence otherwise.

        The sentence never quotes the payload.
        """
        if not is_sealed(data):
            raise Unsealed("plain", "This node accepts only messages sealed with the cluster's "
                           "bus key (security.bus_key_file); nothing was stored.")
        head = len(MAGIC)
        kid = data[head:head + KEY_ID_BYTES]
        nonce = data[head + KEY_ID_BYTES:head + KEY_ID_BYTES + NONCE_BYTES]
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise Unsealed("unknown_key", f"The message is sealed with bus key "
                           f"{kid.hex() or '(none)'}, which is not in this node's bus key "
                           "file; nothing was stored.")
        try:
            plain = cipher.decrypt(nonce, data[head + KEY_ID_BYTES + NONCE_BYTES:], aad)
        except (InvalidTag, ValueError):
            raise Unsealed("tampered", "The message does not open with the bus key for this "
                           "subject's tenant (altered, or sealed for another tenant); nothing "
                           "was stored.") from None
        return plain, kid


def open_frame(keys: BusKeys | None, data: bytes, aad: bytes, *,
               accept_plain: bool = False) -> tuple[bytes, bytes | None]:
    """A node's view of a payload: (frame, key id to answer in, or None when plain).

    Without keys a plain payload passes and a sealed one is refused; with keys only
    a sealed payload that opens passes, and a plain one too with `accept_plain` (while
    gateways move to sealing). Raises Unsealed.
    """
    if keys is not None and accept_plain and not is_sealed(data):
        return data, None
    if keys is None:
        if is_sealed(data):
            raise Unsealed("sealed", "The message is sealed with a bus key, but this node has "
                           "none (security.bus_key_file in cluster.toml); nothing was stored.")
        return data, None
    return keys.open(data, aad)


# ------------------------------------------------------------ the key file


def parse_key_file(text: str) -> list[tuple[bytes, bytes]]:
    """[(key id, key)] from a key file's text; ValueError naming the bad line (no key bytes)."""
    keys: list[tuple[bytes, bytes]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip().lower()
        if not line:
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"line {n} is not '<8 hex key id> <64 hex key>'")
        kid = bytes.fromhex(m.group(1))
        if any(kid == k for k, _ in keys):
            raise ValueError(f"key id {m.group(1)} appears twice")
        keys.append((kid, bytes.fromhex(m.group(2))))
    if not keys:
        raise ValueError("it holds no key")
    return keys


def read_key_file(path: str | Path) -> list[tuple[bytes, bytes]]:
    """[(key id, key)] of a key file (mode 0600 enforced); ConfigError with one sentence."""
    from appliance.cluster.bus import private_file

    p = private_file(path, "bus key file")
    try:
        text = p.read_text("ascii")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"The NATS bus key file {p} cannot be read.") from None
    try:
        return parse_key_file(text)
    except ValueError as exc:
        raise ConfigError(f"The NATS bus key file {p} is malformed: {exc}.") from None


def load_bus_keys(path: str | Path) -> BusKeys:
    """The bus keys of a key file (mode 0600 enforced); ConfigError with one sentence."""
    return BusKeys(read_key_file(path))


def new_key_line() -> tuple[str, str]:
    """(key id, line) of a new random key."""
    kid = secrets.token_hex(KEY_ID_BYTES)
    return kid, f"{kid} {secrets.token_hex(32)}"


def key_lines(path: Path) -> list[str]:
    """The key lines of an existing key file, sealing key first (mode checked)."""
    return [f"{kid.hex()} {key.hex()}" for kid, key in read_key_file(path)]


HEADER = ("# semtrace bus keys: '<key id> <key>'; the first line seals, every line opens.\n"
          "# Keep this file mode 0600, identical on every node and gateway (docs/scale-out.md).\n")


def write_key_file(path: Path, lines: list[str], *, new: bool = False) -> None:
    """Write key lines to `path` (mode 0600): a crash leaves the old file or the new one."""
    if new and path.exists():
        raise InputError(f"{path} already exists; it was not overwritten: give a new file "
                         f"(`semtrace cluster bus-key add {path}` adds a key to this one).")
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(HEADER + "".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:  # named as the file asked for, not the temporary one beside it
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise SemtraceError(f"The bus key file {path} cannot be written "
                            f"({(exc.strerror or type(exc).__name__).lower()}); nothing was "
                            "changed.") from None
    fsync_dir(path.parent)


@dataclass(frozen=True)
class KeyFileChange:
    """What a `semtrace cluster bus-key` command did: the ids, sealing key first."""

    path: str
    ids: list[str]
    changed: str | None  # the key id added, promoted or dropped


def create_key_file(path: Path) -> KeyFileChange:
    """A new key file with one random key."""
    kid, line = new_key_line()
    write_key_file(path, [line], new=True)
    return KeyFileChange(str(path), [kid], kid)


def add_key(path: Path) -> KeyFileChange:
    """Append a new random key: it opens at once, and seals once promoted with `use_key`."""
    lines = key_lines(path)
    kid, line = new_key_line()
    write_key_file(path, [*lines, line])
    return KeyFileChange(str(path), [*_ids(lines), kid], kid)


def use_key(path: Path, kid: str) -> KeyFileChange:
    """Make `kid` the sealing key (first line)."""
    lines = key_lines(path)
    chosen = [line for line in lines if line.split()[0] == kid.lower()]
    if not chosen:
        raise InputError(f"{path} holds no key {kid}: give one of {', '.join(_ids(lines))} "
                         f"(`semtrace cluster bus-key list {path}`).")
    ordered = chosen + [line for line in lines if line not in chosen]
    write_key_file(path, ordered)
    return KeyFileChange(str(path), _ids(ordered), kid.lower())


def drop_key(path: Path, kid: str) -> KeyFileChange:
    """Remove key `kid` (never the sealing key): messages sealed with it no longer open."""
    lines = key_lines(path)
    ids = _ids(lines)
    if kid.lower() not in ids:
        raise InputError(f"{path} holds no key {kid}: give one of {', '.join(_ids(lines))} "
                         f"(`semtrace cluster bus-key list {path}`).")
    if ids[0] == kid.lower():
        raise InputError(f"Key {kid} is the sealing key; make another key seal first "
                         "(`semtrace cluster bus-key use`).")
    kept = [line for line in lines if line.split()[0] != kid.lower()]
    write_key_file(path, kept)
    return KeyFileChange(str(path), _ids(kept), kid.lower())


def _ids(lines: list[str]) -> list[str]:
    return [line.split()[0] for line in lines]
