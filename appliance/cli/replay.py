"""`semtrace replay`: the whole pipeline over a JSON-lines stream of prompts.

`run_replay` and `_replay_runtime` also serve `semtrace eval` and `bench/link.py`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from appliance.cli import (
    credential,
    credential_options,
    data_dir_option,
    emit_json,
    output_path,
    progress_bar,
)
from appliance.errors import InputError, SemtraceError
from appliance.words import plural

if TYPE_CHECKING:
    from appliance.replay import ReplayReport
    from appliance.runtime import Runtime


@contextlib.contextmanager
def _replay_runtime(data_dir: Path | None, passphrase_file: Path | None,
                    key_file: Path | None) -> Iterator[Runtime]:
    """The named data dir (initialised if empty or absent), or an ephemeral one."""
    from appliance.keys import Keyring
    from appliance.runtime import init_data_dir, is_initialised, open_runtime, prepare_dir

    if data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="semtrace-replay-"))
        try:
            prepare_dir(tmp)
            ring = Keyring.random()
            from appliance.store import Store

            Store.open(tmp, ring).close()
            rt = open_runtime(tmp, keyring=ring)  # the key lives in memory only
            try:
                yield rt
            finally:
                rt.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    from appliance.lock import DataDirLock

    cred = credential(passphrase_file, key_file)
    if not is_initialised(data_dir):
        init_data_dir(data_dir, cred)
    lock = DataDirLock(data_dir)  # a running service (or another replay) owns the dir
    try:
        lock.acquire()
    except SemtraceError as exc:
        if "already running" not in str(exc):
            raise
        raise SemtraceError("A semtrace service (or another replay) is running on this data "
                            "dir, and replay writes the store itself: stop it first, or send "
                            "the prompts to the running service with `semtrace send` (one "
                            "ingest request a line, docs/protocol.md). Nothing was stored."
                            ) from None
    try:
        rt = open_runtime(data_dir, cred)
        try:
            yield rt
        finally:
            rt.close()
    finally:
        lock.release()


def _count_lines(path: Path) -> tuple[int, int]:
    """(lines, lines that are not blank) of a file."""
    total = filled = 0
    with path.open("rb") as fh:
        for line in fh:
            total += 1
            filled += 1 if line.strip() else 0
    return total, filled


def check_stream(source: Path, *, max_text_chars: int) -> None:
    """Refuse, before anything is stored, a stream with a bad line (`--strict`)."""
    from appliance.replay import ReplayReport, read_prompts

    with source.open("rb") as fh:
        for _ in read_prompts(fh, max_text_chars=max_text_chars, strict=True,
                              report=ReplayReport()):
            pass


def first_bad_if_none_readable(source: Path, *, max_text_chars: int) -> str | None:
    """Where a stream none of whose lines can be read goes wrong first ("line N: why"),
    else None (reading stops at the first good line)."""
    from appliance.replay import ReplayReport, read_prompts

    report = ReplayReport()
    with source.open("rb") as fh:
        for _ in read_prompts(fh, max_text_chars=max_text_chars, strict=False, report=report):
            return None
    if not report.skipped:
        return None
    lineno, msg = report.skipped[0]
    return f"line {lineno}: {msg}"


def run_replay(rt: Runtime, source: Path, out: IO[str], *, strict: bool,
               batch: int) -> ReplayReport:
    from appliance.checksum import file_digest
    from appliance.replay import ReplayReport, read_prompts, replay, source_tag
    from appliance.runtime import make_pipeline

    report = ReplayReport()
    max_chars = rt.policies.correlation.max_text_chars
    pipe = make_pipeline(rt)
    total, _ = _count_lines(source)
    with source.open("rb") as fh, progress_bar() as prog:
        task = prog.add_task("replay", total=total)
        tag = source_tag(file_digest(source), rt.keyring.replay_tag,
                         replayed_before=rt.store.has_request_prefix)
        prompts = read_prompts(fh, max_text_chars=max_chars, strict=strict, report=report,
                               tag=tag)
        replay(pipe, prompts, out, batch=batch, report=report,
               progress=lambda n: prog.advance(task, n))
    return report


def replay_summary(report: ReplayReport, out_path: Path, seconds: float) -> dict[str, Any]:
    """What `semtrace replay --json` prints: the counts, the threads its stored prompts
    went to, and the seconds the whole command took."""
    return {"lines": report.lines, "ingested": report.ingested,
            "threads": len(report.threads), "duplicates": report.duplicates,
            "erased": report.erased, "unredactable": report.unredactable,
            "skipped": len(report.skipped), "seconds": round(seconds, 1),
            "out": str(out_path),
            "skipped_lines": [{"line": n, "error": msg} for n, msg in report.skipped]}


def summary_line(summary: dict[str, Any]) -> str:
    """The line a replay ends with, once its progress bar has gone."""
    return (f"Replayed {plural(summary['ingested'], 'prompt')} into "
            f"{plural(summary['threads'], 'thread')} in {summary['seconds']:.1f} s "
            f"({summary['skipped']:,} skipped, {plural(summary['duplicates'], 'duplicate')}); "
            f"one line a prompt in {summary['out']}.")


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Where to write one JSON line per input prompt.")
@data_dir_option
@credential_options
@click.option("--strict", is_flag=True, help="Stop at the first bad line instead of skipping.")
@click.option("--batch", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Prompts per redaction/embedding batch and transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def replay(source: Path, out_path: Path, data_dir: Path | None, passphrase_file: Path | None,
           key_file: Path | None, strict: bool, batch: int, as_json: bool) -> None:
    """Run the whole pipeline over a JSON-lines stream of prompts."""
    started = time.monotonic()
    output_path(out_path, source=source)
    if _count_lines(source)[1] == 0:
        raise InputError(f"{source} holds no prompts (it is empty or blank).")
    from appliance.config import load_policies

    max_chars = load_policies().correlation.max_text_chars
    if strict:  # every line checked before the data dir is created or anything stored
        check_stream(source, max_text_chars=max_chars)
    bad = first_bad_if_none_readable(source, max_text_chars=max_chars)
    if bad:  # bad input: refused before the data dir is created
        raise InputError(f"No line of {source} could be read ({bad.rstrip('.')}); nothing "
                         "was stored.")
    with _replay_runtime(data_dir, passphrase_file, key_file) as rt:
        tmp_out = out_path.with_name(out_path.name + ".partial")
        try:
            with tmp_out.open("w", encoding="utf-8") as out:
                report = run_replay(rt, source, out, strict=strict, batch=batch)
            tmp_out.replace(out_path)
        finally:
            tmp_out.unlink(missing_ok=True)
    for lineno, msg in report.skipped:
        click.echo(f"semtrace: line {lineno} skipped: {msg}", err=True)
    summary = replay_summary(report, out_path, time.monotonic() - started)
    if as_json:
        emit_json(summary)
    else:
        click.echo(summary_line(summary), err=True)
        if summary["erased"]:
            one = summary["erased"] == 1
            click.echo(f"{plural(summary['erased'], 'prompt')} not stored: "
                       f"{'its user was' if one else 'their users were'} erased after "
                       f"{'it was' if one else 'they were'} sent.", err=True)
        if summary["unredactable"]:
            click.echo(f"{plural(summary['unredactable'], 'prompt')} not stored: "
                       f"{'its' if summary['unredactable'] == 1 else 'their'} redaction did "
                       "not finish (pattern_timeout_s, docs/redaction.md).", err=True)


COMMANDS = [replay]
