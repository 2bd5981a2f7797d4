"""The key-rotation journal (`rotation.json`): begun, resumed with either credential, ended.

The journal holds both keyring descriptions and each master key wrapped under the
other, so that whichever credential the operator gives after a crash, the next open
completes the rotation (the steps in between: `appliance.store.rotation`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import SemtraceError, WrongKey
from appliance.keys.credentials import Credential
from appliance.keys.durable import damaged, fsync_dir, read_json, write_atomic
from appliance.keys.keyring import Keyring
from appliance.keys.meta import KEYRING_FILE, make_meta, ring_from_meta, unlock

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
    old_meta = read_json(data_dir / KEYRING_FILE)
    new, new_meta = make_meta(new_cred, carry=old)
    journal = {"version": 1, "id": secrets.token_hex(8), "old": old_meta, "new": new_meta,
               "new_master": old._seal_secret(new._master, "rotation"),
               "old_master": new._seal_secret(old._master, "rotation")}
    write_atomic(data_dir / ROTATION_JOURNAL, journal)
    return Rotation(old, new, str(journal["id"]), new_cred.kind)


def resume_rotation(data_dir: Path, cred: Credential) -> Rotation:
    """Both keyrings of an interrupted rotation, from either credential."""
    journal = read_json(data_dir / ROTATION_JOURNAL)
    try:
        old_meta, new_meta = journal["old"], journal["new"]
        old = unlock(old_meta, cred)
        if old is not None:
            new = ring_from_meta(old._open_secret(journal["new_master"], "rotation"), new_meta)
        else:
            new_ring = unlock(new_meta, cred)
            if new_ring is None:
                raise WrongKey("Wrong passphrase or key for this data dir; nothing was "
                               "changed.")
            new = new_ring
            old = ring_from_meta(new._open_secret(journal["old_master"], "rotation"), old_meta)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
        raise damaged(data_dir / ROTATION_JOURNAL) from None
    return Rotation(old, new, str(journal["id"]), str(new_meta.get("kind")))


def install_rotated_keyring(data_dir: Path) -> None:
    """Make the journal's new keyring description the data dir's (atomic)."""
    journal = read_json(data_dir / ROTATION_JOURNAL)
    write_atomic(data_dir / KEYRING_FILE, journal["new"])


def end_rotation(data_dir: Path) -> None:
    """Remove the journal: the rotation is complete."""
    (data_dir / ROTATION_JOURNAL).unlink(missing_ok=True)
    fsync_dir(data_dir)
