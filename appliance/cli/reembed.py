"""`semtrace reembed`: stored prompts whose vectors come from another model, embedded again."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli import credential_options, data_dir_option, emit_json, open_dir, progress_bar
from appliance.words import plural


@click.command()
@data_dir_option
@credential_options
@click.option("--batch", type=click.IntRange(1, 4096), default=256, show_default=True,
              help="Prompts embedded and committed at a time (each batch kept if stopped).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reembed(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
            batch: int, as_json: bool) -> None:
    """Re-embed stored prompts whose vectors come from another model (resumable)."""
    from appliance.embed import LlamaEmbedder
    from appliance.service import DataDirLock

    rt = open_dir(data_dir, passphrase_file, key_file)
    lock = DataDirLock(rt.data_dir)
    done = 0
    try:
        lock.acquire()
        embedder = LlamaEmbedder(rt.policies.correlation.embedding)
        total = rt.store.count_stale(embedder.model_id)
        with progress_bar() as prog:
            task = prog.add_task("re-embedding", total=total)
            while rows := rt.store.stale_texts(embedder.model_id, batch):
                vectors, _ = embedder.embed([t for _, t in rows])
                rt.store.replace_vectors([(rid, v) for (rid, _), v in zip(rows, vectors,
                                                                           strict=True)],
                                         embedder.model_id)  # each batch commits: resumable
                done += len(rows)
                prog.advance(task, len(rows))
    finally:
        lock.release()
        rt.close()
    if as_json:
        emit_json({"reembedded": done})
    else:
        click.echo(f"Re-embedded {plural(done, 'prompt')} with the current model.")


COMMANDS = [reembed]
