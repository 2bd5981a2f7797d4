"""The compliance key's files: enrolment, the tag on reveal.pub, unlocking (I/O).

`reveal.pub` (public key, in clear) carries a tag under the keyring's pseudonym key, so
a public key swapped in by someone who can write the data dir is refused;
`reveal-key.json` holds the private key under the compliance credential (Argon2id).
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import (
    DamagedFile,
    InputError,
    NoComplianceKey,
    SemtraceError,
    WrongKey,
)
from appliance.keys.credentials import Credential
from appliance.keys.derive import NONCE_BYTES, KdfParams, argon2id, b64
from appliance.keys.durable import fsync_dir
from appliance.keys.keyring import Keyring
from appliance.keys.reveal import RevealOpener, RevealSealer

REVEAL_PUBLIC_FILE = "reveal.pub"
REVEAL_PRIVATE_FILE = "reveal-key.json"


def create_reveal_key(data_dir: Path, compliance: Credential,
                      keyring: Keyring | None = None) -> None:
    """Create the compliance key pair: public key in clear (tagged by `keyring`, so a
    substituted file is refused), private key under the credential."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    if (data_dir / REVEAL_PRIVATE_FILE).exists():
        raise InputError("A compliance key already exists for this data dir; nothing was "
                         "changed.")
    priv = X25519PrivateKey.generate()
    raw = priv.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    pub = priv.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
    params = KdfParams(salt=secrets.token_bytes(16))
    wrap = AESGCM(argon2id(compliance.material(), params))
    nonce = os.urandom(NONCE_BYTES)
    meta = {"version": 1, "kdf": {"name": "argon2id", "salt": b64(params.salt),
                                  "iterations": params.iterations, "lanes": params.lanes,
                                  "memory_cost": params.memory_cost},
            "nonce": b64(nonce), "ct": b64(wrap.encrypt(nonce, raw, b"semtrace-reveal")),
            "public": b64(pub)}
    fd = os.open(data_dir / REVEAL_PRIVATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh, indent=1)
    (data_dir / REVEAL_PUBLIC_FILE).write_text(b64(pub) + "\n")
    if keyring is not None:
        tag_reveal_key(data_dir, keyring)


def tag_reveal_key(data_dir: Path, keyring: Keyring) -> None:
    """Add the keyring's tag to reveal.pub (at enrolment; retag_reveal_key for a file
    written before tags existed). Replaced by rename: never half-written."""
    path = data_dir / REVEAL_PUBLIC_FILE
    pub = _reveal_public(path)[0]
    side = path.with_name(path.name + ".tmp")
    side.write_text(f"{b64(pub)}\ntag {keyring.tag(REVEAL_PUBLIC_FILE, pub)}\n")
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
        raise DamagedFile(f"{path} is damaged; nothing was written. Restore it from a "
                          "backup of the data dir.") from None
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
    try:
        opener = unlock_reveal_key(data_dir, compliance)
    except WrongKey:  # its own sentence says "revealed"; a retag reveals nothing
        raise WrongKey("The compliance credential is wrong; nothing was changed.") from None
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
        raise NoComplianceKey("No compliance key is enrolled for this data dir, so no "
                              "originals are kept; `semtrace compliance enroll` keeps those of "
                              "the prompts stored from then on.")
    try:  # a damaged file is named, never a traceback (nor taken for a wrong credential)
        meta = json.loads(path.read_text(encoding="utf-8"))
        kdf = meta["kdf"]
        params = KdfParams(salt=base64.b64decode(kdf["salt"]), iterations=kdf["iterations"],
                           lanes=kdf["lanes"], memory_cost=kdf["memory_cost"])
        nonce, ct = base64.b64decode(meta["nonce"]), base64.b64decode(meta["ct"])
        wrap = AESGCM(argon2id(compliance.material(), params))
        raw = wrap.decrypt(nonce, ct, b"semtrace-reveal")
        return RevealOpener(raw)
    except InvalidTag:
        raise WrongKey("The compliance credential is wrong; nothing was revealed.") from None
    except (ValueError, KeyError, TypeError, OverflowError, AttributeError):
        raise DamagedFile(f"{path} is damaged; nothing was revealed. Restore it from a "
                          "backup of the data dir.") from None
