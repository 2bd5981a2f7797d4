"""Where the master secret comes from: passphrase or key file, found and read (I/O)."""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import InputError
from appliance.keys.derive import Secret

PASSPHRASE_ENV = "SEMTRACE_PASSPHRASE_FILE"
KEY_FILE_ENV = "SEMTRACE_KEY_FILE"
SYSTEMD_CREDENTIAL = "semtrace-passphrase"


@dataclass(frozen=True)
class Credential:
    """Where the master secret comes from: a passphrase or a raw key file."""

    kind: str  # "passphrase" | "keyfile"
    secret: Secret

    def material(self) -> bytes:
        return self.secret._b


def same_secret(a: Credential, b: Credential) -> bool:
    """Whether two credentials hold the same secret (compared in constant time)."""
    return hmac.compare_digest(a.material(), b.material())


def require_distinct(master: Credential, compliance: Credential) -> None:
    """Refuse a compliance passphrase that is the master secret: the split between who
    runs the appliance and who may reveal originals would be gone."""
    if same_secret(master, compliance):
        raise InputError("The compliance passphrase must differ from the master passphrase "
                         "or key (whoever holds the master one could then reveal originals); "
                         "nothing was changed.")


def _check_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise InputError(f"The {what} {path} is a folder; give the file inside it.")
    if path.exists() and not path.is_file():
        # a pipe (`--passphrase-file <(...)`, whose mode cannot keep it private) or a device
        raise InputError(f"The {what} {path} is not a regular file (a pipe such as "
                         f"`<(...)`, or a device); write it to a file of mode 600 and give "
                         "that.")
    if not path.is_file():
        raise InputError(f"The {what} {path} does not exist.")


def _check_private(path: Path, what: str) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"The {what} {path} is readable by other users; run `chmod 600 {path}` first."
        )


def read_passphrase_file(path: Path) -> Credential:
    """Read a passphrase from a file (first line, trailing newline dropped)."""
    _check_file(path, "passphrase file")
    _check_private(path, "passphrase file")
    raw = path.read_bytes().split(b"\n", 1)[0].rstrip(b"\r")
    if len(raw) < 8:
        raise InputError(f"The passphrase in {path} is shorter than 8 characters.")
    return Credential("passphrase", Secret(raw))


def read_key_file(path: Path) -> Credential:
    """Read a raw 32-byte master key (binary or 64 hex characters), mode 0600 enforced."""
    _check_file(path, "key file")
    _check_private(path, "key file")
    raw = path.read_bytes().strip()
    if len(raw) == 64:
        with contextlib.suppress(UnicodeDecodeError, ValueError):
            raw = bytes.fromhex(raw.decode("ascii"))
    if len(raw) != 32:
        raise InputError(f"The key file {path} must hold 32 bytes (or 64 hex characters).")
    return Credential("keyfile", Secret(raw))


def write_key_file(path: Path) -> None:
    """Create a new random key file with mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")


def credential_in_environment() -> bool:
    """Whether `find_credential` would find a credential without a terminal prompt and
    without options: an environment variable or a systemd credential names one."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    return bool(os.environ.get(KEY_FILE_ENV) or os.environ.get(PASSPHRASE_ENV)
                or (cred_dir and (Path(cred_dir) / SYSTEMD_CREDENTIAL).is_file()))


# the passphrase typed at the terminal: `keys rotate`, `compliance enroll` and others read the
# credential before opening the store and again to open it, and asked for it twice
_TYPED: list[Credential] = []


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
        if not _TYPED:  # once a process: a command reads the credential more than once
            import getpass

            value = getpass.getpass("Semtrace passphrase: ").encode()
            if len(value) < 8:
                raise InputError("The passphrase must be at least 8 characters.")
            _TYPED.append(Credential("passphrase", Secret(value)))
        return _TYPED[0]
    raise InputError(  # a credential left out is bad input (exit 2), as a missing file is
        "No passphrase given: use --passphrase-file, --key-file or "
        f"{PASSPHRASE_ENV}, or run on a terminal."
    )
