"""`semtrace model ...`: the bundled embedding model."""

from __future__ import annotations

import click


@click.group()
def model() -> None:
    """The bundled embedding model."""


@model.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(as_json: bool) -> None:
    """Check the bundled model file against its manifest checksum."""
    from appliance.embed import load_manifest, verify_model

    manifest = load_manifest()
    verify_model(manifest)
    if as_json:
        from appliance.cli import emit_json

        emit_json({"model_id": manifest.model_id, "path": str(manifest.path),
                   "sha256": manifest.sha256, "dims": manifest.dims, "ok": True})
    else:
        click.echo(f"Model {manifest.model_id} verified ({manifest.path.name}, "
                   f"{manifest.dims} dims).")


COMMANDS = [model]
