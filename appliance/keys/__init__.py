"""Key hierarchy: master key, SQLCipher key, pseudonyms, per-bucket DEKs.

The only package that touches key bytes. Everything else gets opaque handles
(`Keyring`, `Dek`) whose repr never shows key material, and imports them from here.

    passphrase / key file --Argon2id--> master key
        master --HKDF--> SQLCipher raw keys, wrapping key, verifier, audit signing key
        wrapping key --AES-GCM--> DEK(tenant, user, day)
    pseudonym key (HMAC of user ids, sessions, entities, turns): derived from the
        first master key and carried, wrapped under the current one, across rotations,
        so that pseudonyms (erasure, legal holds, linking) never change.

A key rotation is journalled (`rotation.json`: both keyring descriptions and each
master key wrapped under the other), so that whichever credential the operator
gives after a crash, the next open completes it (`appliance.store.rotation`).

Modules (pure ones do no file I/O):
    derive        Argon2id, HKDF, `Secret`, `KdfParams` (pure)
    keyring       `Keyring` and `Dek`: keys derived from one master key (pure)
    signing       `AuditSigner`, `verify_signature` (pure)
    meta          keyring descriptions <-> keyrings (pure)
    reveal        compliance key pair: `RevealSealer`, `RevealOpener` (pure)
    credentials   passphrase / key file: found, read, created
    durable       private JSON files read and written crash-safely
    keyring_file  `keyring.json`: created at init, opened with a credential
    rotation      the rotation journal
    reveal_files  the compliance key's files and the tag on reveal.pub
    bus           the bus key: NATS payloads sealed with AES-256-GCM, its key file
"""

from appliance.keys.credentials import (
    KEY_FILE_ENV,
    PASSPHRASE_ENV,
    SYSTEMD_CREDENTIAL,
    Credential,
    find_credential,
    read_key_file,
    read_passphrase_file,
    require_distinct,
    same_secret,
    write_key_file,
)
from appliance.keys.derive import NONCE_BYTES, KdfParams, Secret
from appliance.keys.durable import fsync_dir
from appliance.keys.keyring import Dek, Keyring
from appliance.keys.keyring_file import create_keyring, open_keyring
from appliance.keys.meta import KEYRING_FILE, KEYRING_VERSION
from appliance.keys.reveal import RevealOpener, RevealSealer
from appliance.keys.reveal_files import (
    REVEAL_PRIVATE_FILE,
    REVEAL_PUBLIC_FILE,
    create_reveal_key,
    retag_reveal_key,
    reveal_sealer,
    reveal_tag_ok,
    tag_reveal_key,
    unlock_reveal_key,
)
from appliance.keys.rotation import (
    ROTATION_JOURNAL,
    Rotation,
    begin_rotation,
    discard_unbegun_rotation,
    end_rotation,
    install_rotated_keyring,
    resume_rotation,
    rotation_pending,
)
from appliance.keys.signing import AuditSigner, verify_signature

__all__ = [
    "KEYRING_FILE", "KEYRING_VERSION", "KEY_FILE_ENV", "NONCE_BYTES", "PASSPHRASE_ENV",
    "REVEAL_PRIVATE_FILE", "REVEAL_PUBLIC_FILE", "ROTATION_JOURNAL", "SYSTEMD_CREDENTIAL",
    "AuditSigner", "Credential", "Dek", "KdfParams", "Keyring", "RevealOpener", "RevealSealer",
    "Rotation", "Secret", "begin_rotation", "create_keyring", "create_reveal_key",
    "discard_unbegun_rotation", "end_rotation", "find_credential", "fsync_dir",
    "install_rotated_keyring", "open_keyring", "read_key_file", "read_passphrase_file",
    "require_distinct", "resume_rotation", "retag_reveal_key", "reveal_sealer",
    "reveal_tag_ok", "rotation_pending", "same_secret", "tag_reveal_key", "unlock_reveal_key",
    "verify_signature", "write_key_file",
]
