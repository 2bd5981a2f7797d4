"""`semtrace keys`: the master key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from appliance.cli import (
    credential,
    credential_options,
    data_dir_option,
    emit_json,
    progress_bar,
)
from appliance.cli.compliance import _opened
from appliance.errors import InputError, SemtraceError
from appliance.words import plural

if TYPE_CHECKING:
    from appliance.keys import Credential


@click.group()
def keys() -> None:
    """The master key."""


@keys.command("rotate")
@data_dir_option
@credential_options
@click.option("--new-passphrase-file", type=click.Path(path_type=Path), default=None,
              help="File holding the new passphrase.")
@click.option("--new-key-file", type=click.Path(path_type=Path), default=None,
              help="The new raw 32-byte master key file (mode 0600).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def keys_rotate(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
                new_passphrase_file: Path | None, new_key_file: Path | None,
                as_json: bool) -> None:
    """Re-wrap every data key under a new master key; the old one stops working.

    Pseudonyms are kept (erasure, legal holds and linking still find earlier
    records). Crash-safe: if interrupted, the next open with either credential
    completes the rotation.
    """
    from appliance.keys import open_keyring, read_key_file, read_passphrase_file, same_secret
    from appliance.lock import DataDirLock
    from appliance.store.rotation import rotate

    if (new_passphrase_file is None) == (new_key_file is None):
        raise InputError("Give exactly one of --new-passphrase-file or --new-key-file.")
    new_cred = (read_key_file(new_key_file) if new_key_file
                else read_passphrase_file(new_passphrase_file))  # type: ignore[arg-type]
    with _opened(data_dir, passphrase_file, key_file) as rt:
        # opening checks the credential (and completes an interrupted rotation): a wrong
        # one is said as such, not as 'the one in use' when the new one repeats it
        directory, old_ring = rt.data_dir, rt.keyring
    if same_secret(credential(passphrase_file, key_file), new_cred):
        raise InputError("The new credential is the one in use: it would still open this "
                         "data dir; nothing was changed.")
    _not_the_compliance_secret(directory, new_cred)
    lock = DataDirLock(directory)
    try:
        lock.acquire()  # never while the service runs
    except SemtraceError as exc:
        if "already running" not in str(exc):
            raise
        raise SemtraceError("A semtrace service (or another command that writes the store) is "
                            "running on this data dir, and rotation rewrites the whole store: "
                            "stop it first (`systemctl stop semtrace` where install.sh "
                            "installed it), rotate, put the new passphrase where the service "
                            "reads it, then start it again. Nothing was changed.") from None
    try:
        with progress_bar() as prog:  # the whole store is rewritten: minutes on a large one
            task = prog.add_task("keys rotate", total=None)
            n = rotate(directory, old_ring, new_cred, progress=lambda what, done, total:
                       prog.update(task, description=what, completed=done,
                                   total=total or None))
    finally:
        lock.release()
    signer = open_keyring(directory, new_cred).audit_signer().key_id()
    if as_json:
        emit_json({"rotated": True, "deks_rewrapped": n, "pseudonyms_kept": True,
                   "audit_key_id": signer, "audit_key_id_before": old_ring.audit_signer()
                   .key_id()})
    else:
        click.echo(f"Master key rotated; {plural(n, 'data key')} re-wrapped, pseudonyms "
                   "kept. The old credential no longer opens this data dir.")
        # a public key saved before no longer vouches for the reports signed from now on
        click.echo(f"The audit log and retention reports are signed with a new key from now "
                   f"on (key {signer}): give the output of `semtrace audit public-key` again "
                   "to whoever checks reports with `audit check-report --public-key`.")



def _not_the_compliance_secret(directory: Path, new_cred: Credential) -> None:
    """A new master secret that unlocks the compliance key would let the operator reveal."""
    from appliance.errors import WrongKey
    from appliance.keys import REVEAL_PRIVATE_FILE, unlock_reveal_key

    if not (directory / REVEAL_PRIVATE_FILE).exists():
        return
    try:
        unlock_reveal_key(directory, new_cred)
    except WrongKey:
        return
    raise InputError("The new master credential is the compliance passphrase (whoever holds "
                     "the master one could then reveal originals); nothing was changed.")


COMMANDS = [keys]
