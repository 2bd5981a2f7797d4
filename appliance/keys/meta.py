"""Keyring descriptions: the stored JSON that says how to re-derive a master key (pure).

A description holds the credential kind, the Argon2id parameters, a verifier and, after
a rotation, the pseudonym key wrapped under the new master key; never a secret in clear.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Any

from appliance.constants import KEYRING_FILE as KEYRING_FILE  # its home: the CLI reads it
from appliance.keys.credentials import Credential
from appliance.keys.derive import KdfParams, argon2id, b64, hkdf
from appliance.keys.keyring import Keyring

KEYRING_VERSION = 1


def derive_master(cred: Credential, meta: dict[str, Any]) -> bytes:
    """The master key `cred` gives under the description `meta`."""
    if cred.kind == "passphrase":
        kdf = meta["kdf"]
        params = KdfParams(salt=base64.b64decode(kdf["salt"]), iterations=kdf["iterations"],
                           lanes=kdf["lanes"], memory_cost=kdf["memory_cost"])
        return argon2id(cred.material(), params)
    return hkdf(cred.material(), "semtrace/keyfile/v1")


def ring_from_meta(master: bytes, meta: dict[str, Any]) -> Keyring:
    """The keyring of `master` as `meta` describes it (with its carried pseudonym key)."""
    carried = meta.get("pseudonym_key")
    if not carried:
        return Keyring(master)
    return Keyring(master, Keyring(master)._open_secret(str(carried), "pseudonym-key"))


def make_meta(cred: Credential, *, carry: Keyring | None = None,
              params: KdfParams | None = None) -> tuple[Keyring, dict[str, Any]]:
    """A fresh master key for `cred` (new salt) and the keyring description to store."""
    meta: dict[str, Any] = {"version": KEYRING_VERSION, "kind": cred.kind}
    if cred.kind == "passphrase":
        params = params or KdfParams(salt=secrets.token_bytes(16))
        meta["kdf"] = {"name": "argon2id", "salt": b64(params.salt),
                       "iterations": params.iterations, "lanes": params.lanes,
                       "memory_cost": params.memory_cost}
    master = derive_master(cred, meta)
    ring = Keyring(master, carry._pseudo if carry is not None else None)
    if carry is not None:
        meta["pseudonym_key"] = ring._seal_secret(carry._pseudo, "pseudonym-key")
    meta["verifier"] = ring.verifier()
    return ring, meta


def unlock(meta: dict[str, Any], cred: Credential) -> Keyring | None:
    """The keyring `meta` describes if `cred` opens it, else None."""
    if meta.get("kind") != cred.kind:
        return None
    master = derive_master(cred, meta)
    if not hmac.compare_digest(Keyring(master).verifier(), str(meta.get("verifier", ""))):
        return None
    return ring_from_meta(master, meta)
