"""`semtrace cluster bus-key ...`: the key file sealing payloads on the NATS bus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.cli import emit_json


@click.group("bus-key")
def bus_key() -> None:
    """The bus key file: payloads on NATS sealed with AES-256-GCM (docs/scale-out.md)."""


key_file_argument = click.argument("path", type=click.Path(path_type=Path))
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _key_change(change: Any, as_json: bool, sentence: str) -> None:
    if as_json:
        emit_json(change)
    else:
        click.echo(sentence)


@bus_key.command("new")
@key_file_argument
@json_option
def bus_key_new(path: Path, as_json: bool) -> None:
    """Write a new bus key file (mode 0600) holding one random 32-byte key."""
    from appliance.keys.bus import create_key_file

    change = create_key_file(path)
    _key_change(change, as_json, f"Wrote {path} with bus key {change.changed}. Copy it "
                "(mode 0600) to every node and gateway and set security.bus_key_file.")


@bus_key.command("add")
@key_file_argument
@json_option
def bus_key_add(path: Path, as_json: bool) -> None:
    """Append a new key that opens at once and seals once made current with `use`."""
    from appliance.keys.bus import add_key

    change = add_key(path)
    _key_change(change, as_json, f"Added bus key {change.changed} to {path} (it does not seal "
                "yet). Copy the file to every node and restart them, then run `semtrace "
                f"cluster bus-key use {path} {change.changed}`.")


@bus_key.command("use")
@key_file_argument
@click.argument("key_id")
@json_option
def bus_key_use(path: Path, key_id: str, as_json: bool) -> None:
    """Make KEY_ID the key that seals (the others still open)."""
    from appliance.keys.bus import use_key

    change = use_key(path, key_id)
    _key_change(change, as_json, f"Bus key {change.changed} now seals in {path}. Copy the "
                "file to every node and gateway and restart them.")


@bus_key.command("drop")
@key_file_argument
@click.argument("key_id")
@json_option
def bus_key_drop(path: Path, key_id: str, as_json: bool) -> None:
    """Remove KEY_ID: messages still queued under it will be refused."""
    from appliance.keys.bus import drop_key

    change = drop_key(path, key_id)
    _key_change(change, as_json, f"Removed bus key {change.changed} from {path}; "
                f"keys left: {', '.join(change.ids)}.")


@bus_key.command("list")
@key_file_argument
@json_option
def bus_key_list(path: Path, as_json: bool) -> None:
    """The key ids of a bus key file, the sealing one first (never the keys)."""
    from appliance.keys.bus import KeyFileChange, load_bus_keys

    ids = load_bus_keys(path).ids()
    _key_change(KeyFileChange(str(path), ids, None), as_json,
                f"{ids[0]} (seals)" + "".join(f"\n{kid}" for kid in ids[1:]))
