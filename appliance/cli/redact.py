"""`semtrace redact`: PII detection over a JSON-lines file, for evaluation.

Input lines are `{"index", "text"}`; output lines are `{"index", "spans":
[{"start", "end", "entity_type"}], "redacted"}` with offsets into the input
text (end exclusive). Placeholders are numbered per line (`<PERSON_1>`).
Nothing read is logged: a bad line is reported by its number only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click

from appliance.errors import InputError
from appliance.words import plural


@dataclass
class RedactReport:
    """What a run read, wrote and skipped (line numbers are 1-based)."""

    lines: int = 0
    written: int = 0
    spans: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


def parse_input_line(line: str | bytes) -> tuple[Any, str]:
    """`(index, text)` from one input line; InputError says what is wrong (never the text)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("not valid UTF-8") from None
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        raise InputError("not valid JSON") from None
    if not isinstance(row, dict):
        raise InputError("not a JSON object")
    if "text" not in row or not isinstance(row["text"], str):
        raise InputError('"text" is missing or not a string')
    index = row.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int | str)):
        raise InputError('"index" must be an integer or a string')
    return index, row["text"]


def redact_line(redactor: Any, index: Any, text: str) -> dict[str, Any]:
    """The output object for one text: spans and the redacted text, numbered per line."""
    from appliance.records import Prompt
    from appliance.redact import apply_redaction, entity_keys, number_placeholders

    hits = redactor.analyze(text)
    prompt = Prompt(request_id=str(index), tenant="cli", user_id="cli",
                    ts=datetime.now(UTC), text=text)
    redacted = apply_redaction(prompt, hits)
    keys = entity_keys(redacted, lambda v: hashlib.sha256(v.encode()).hexdigest())
    final, _ = number_placeholders(redacted, keys, {},
                                   mask=redactor.settings.operator == "mask")
    return {"index": index,
            "spans": [{"start": h.start, "end": h.end, "entity_type": h.entity_type}
                      for h in hits],
            "redacted": final}


def redact_stream(redactor: Any, lines: Iterator[tuple[int, str | bytes]], out: IO[str],
                  report: RedactReport) -> None:
    """Redact each numbered input line into `out`; bad lines are recorded and skipped, and
    so is a text the analyser could not finish (fail closed)."""
    from appliance.redact.failclosed import RedactionFailed

    for lineno, line in lines:
        report.lines += 1
        if not line.strip():
            continue
        try:
            index, text = parse_input_line(line)
        except InputError as exc:
            report.skipped.append((lineno, str(exc)))
            continue
        try:
            row = redact_line(redactor, lineno - 1 if index is None else index, text)
        except RedactionFailed as exc:  # fail closed: the line is not written
            report.skipped.append((lineno, f"not redacted: {exc}"))
            continue
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        report.written += 1
        report.spans += len(row["spans"])


def _numbered(fh: IO[bytes], advance: Any) -> Iterator[tuple[int, bytes]]:
    for lineno, line in enumerate(fh, start=1):
        yield lineno, line
        advance()


def _load_redactor(cache_dir: Path | None) -> Any:
    from appliance.config import RedactionSettings, load_policy
    from appliance.redact import Redactor
    from appliance.runtime import default_data_dir

    settings = load_policy("redaction", RedactionSettings)
    return Redactor(settings, cache_dir=cache_dir or default_data_dir() / "cache")


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Where to write one JSON line per input line.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache for the name lists (default: the data dir's cache).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def redact(source: Path, out_path: Path, cache_dir: Path | None, as_json: bool) -> None:
    """Detect and redact PII in a JSON-lines file of {"index", "text"} objects."""
    from appliance.cli import output_path, progress_bar

    output_path(out_path, source=source)
    with source.open("rb") as fh:
        lines = [bool(line.strip()) for line in fh]
    if not any(lines):
        raise InputError(f"{source} holds no lines to redact (it is empty or blank).")
    total = len(lines)
    redactor = _load_redactor(cache_dir)
    report = RedactReport()
    tmp_out = out_path.with_name(out_path.name + ".partial")
    try:
        with source.open("rb") as fh, tmp_out.open("w", encoding="utf-8") as out, \
                progress_bar() as prog:
            task = prog.add_task("redact", total=total)
            redact_stream(redactor, _numbered(fh, lambda: prog.advance(task)), out, report)
        if report.skipped and not report.written:  # bad input: nothing to show for it
            n, msg = report.skipped[0]
            raise InputError(f"No line of {source} could be read ({len(report.skipped)} "
                             f"skipped; line {n}: {msg}); nothing was written.")
        tmp_out.replace(out_path)
    finally:
        tmp_out.unlink(missing_ok=True)
    for lineno, msg in report.skipped:
        click.echo(f"semtrace: line {lineno} skipped: {msg}.", err=True)
    summary = {"lines": report.lines, "written": report.written, "spans": report.spans,
               "skipped": len(report.skipped), "out": str(out_path),
               "skipped_lines": [{"line": n, "error": f"{msg}."} for n, msg in report.skipped]}
    if as_json:
        from appliance.cli import emit_json

        emit_json(summary)
    else:
        click.echo(f"Redacted {plural(report.written, 'line')} ({plural(report.spans, 'span')}, "
                   f"{len(report.skipped)} skipped) into {out_path}.", err=True)


COMMANDS = [redact]
