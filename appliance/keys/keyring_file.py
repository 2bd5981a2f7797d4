"""The data dir's keyring file (`keyring.json`): created at init, opened with a credential."""

from __future__ import annotations

import json
import os
from pathlib import Path

from appliance.errors import SemtraceError, WrongKey
from appliance.keys.credentials import Credential
from appliance.keys.derive import KdfParams
from appliance.keys.durable import damaged, read_json
from appliance.keys.keyring import Keyring
from appliance.keys.meta import KEYRING_FILE, KEYRING_VERSION, make_meta, unlock
from appliance.keys.rotation import rotation_pending

KINDS = ("passphrase", "keyfile")  # the credentials a keyring description is made for


def create_keyring(data_dir: Path, cred: Credential, *, params: KdfParams | None = None) -> Keyring:
    """Derive a new master key for `data_dir` and record how to re-derive it (no secret)."""
    path = data_dir / KEYRING_FILE
    if path.exists():
        raise SemtraceError(f"{data_dir} is already initialised.")
    ring, meta = make_meta(cred, params=params)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh, indent=1)
    return ring


def open_keyring(data_dir: Path, cred: Credential) -> Keyring:
    """Re-derive the master key of `data_dir`; WrongKey if the credential does not fit."""
    if rotation_pending(data_dir):
        raise SemtraceError("A key rotation was interrupted; opening the data dir with "
                            "either credential completes it.")
    if (data_dir / (KEYRING_FILE + ".rotating")).exists():  # left by earlier versions
        raise SemtraceError(
            "A key rotation was interrupted: if the new credential was already applied, "
            "rename keyring.json.rotating to keyring.json; else delete it.")
    meta = read_json(data_dir / KEYRING_FILE)
    version = meta.get("version", KEYRING_VERSION)
    if isinstance(version, int) and version > KEYRING_VERSION:
        # a description this code cannot read: "wrong passphrase" would send the
        # operator after the wrong problem
        raise SemtraceError(f"{data_dir / KEYRING_FILE} was written by a newer version of "
                            f"Semtrace (keyring version {version!r}); run that version or a "
                            "newer one. Nothing was changed.")
    try:  # a description cut short or altered: named, never a traceback
        ring = unlock(meta, cred)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
        raise damaged(data_dir / KEYRING_FILE) from None
    if ring is None:
        if meta.get("kind") not in KINDS:  # 'opened with a None' named no problem
            raise damaged(data_dir / KEYRING_FILE)
        if meta.get("kind") != cred.kind:
            raise WrongKey(f"This data dir is opened with a {meta.get('kind')}, "
                           f"not a {cred.kind}.")
        raise WrongKey("Wrong passphrase or key for this data dir; nothing was changed.")
    return ring
