"""`semtrace eval threads GOLD.jsonl`: replay a gold stream and score the threads found.

The stream runs through the real pipeline (Presidio, llama.cpp, linker, store)
in an ephemeral store, then is scored beside two baselines: a 30-minute gap
rule and the design's first rule (cosine > 0.75 within 24 h, with our embedder's
vectors of the redacted text, read back from that store).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import emit_json
from appliance.errors import InputError, SemtraceError

if TYPE_CHECKING:
    import numpy as np

GOLD_KEYS = ("index", "user_id", "ts", "text", "gold_thread_id", "gold_parent_index")
HEADLINE = ("pair_P", "pair_R", "pair_F1", "ARI_mean_per_user", "parent_acc",
            "parent_acc_on_followups", "newthread_P", "newthread_R", "newthread_F1",
            "topic_ARI", "cross_user_links", "invalid_parent_links", "pred_threads")
BY_SOURCE = ("pair_F1", "newthread_F1", "parent_acc")
SYSTEMS = ("linker", "gap_30min", "cosine_0.75_24h")


def load_gold(path: Path) -> list[dict[str, Any]]:
    """Gold rows; SemtraceError naming the line when one is not a gold row."""
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise InputError(f"{path} line {lineno} is not valid JSON.") from None
                missing = [k for k in GOLD_KEYS if not isinstance(row, dict) or k not in row]
                if missing:
                    raise InputError(f"{path} line {lineno} is not a gold row "
                                     f"(missing {', '.join(missing)}).")
                problem = _gold_problem(row, seen)
                if problem:
                    raise InputError(f"{path} line {lineno}: {problem}")
                seen.add(row["index"])
                rows.append(row)
    except UnicodeDecodeError:
        raise InputError(f"{path} is not valid UTF-8.") from None
    if not rows:
        raise InputError(f"{path} holds no gold rows.")
    for row in rows:
        parent = row["gold_parent_index"]
        if parent is not None and parent not in seen:
            raise InputError(f"{path}: the gold row with index {row['index']} names a parent "
                             f"index ({parent}) that no row has.")
    return rows


def _gold_problem(row: dict[str, Any], seen: set[int]) -> str | None:
    """What is wrong with one gold row's fields (never their values, which may be PII)."""
    from appliance.ingest import parse_ts

    index, parent = row["index"], row["gold_parent_index"]
    if isinstance(index, bool) or not isinstance(index, int):
        return "'index' must be an integer."
    if index in seen:
        return f"index {index} is used by an earlier row."
    if not isinstance(row["user_id"], str) or not isinstance(row["text"], str):
        return "'user_id' and 'text' must be strings."
    if not isinstance(row["gold_thread_id"], str | int) or isinstance(row["gold_thread_id"],
                                                                      bool):
        return "'gold_thread_id' must be a string."
    if parent is not None and (isinstance(parent, bool) or not isinstance(parent, int)):
        return "'gold_parent_index' must be an integer or null."
    try:
        parse_ts(row["ts"])
    except SemtraceError as exc:
        return str(exc)
    return None


def replay_and_score(gold_path: Path, gold: list[dict[str, Any]], *,
                     by_source: bool) -> dict[str, Any]:
    """Replay the stream in an ephemeral store; score it and the two baselines."""
    from appliance.cli.replay import _replay_runtime, run_replay
    from appliance.embed import load_manifest
    from appliance.evaluate import cosine_baseline, gap_baseline, score_all
    from appliance.replay import ReplayReport

    out = io.StringIO()
    with _replay_runtime(None, None, None) as rt:
        report = run_replay(rt, gold_path, out, strict=False, batch=64)
        assert isinstance(report, ReplayReport)
        index_of = {r.record_id: r.index for r in rt.store.records("1=1", ())}
        vectors: dict[int, np.ndarray] = {}
        for rid, _, _, vec in rt.store.iter_vectors(model_id=load_manifest().model_id):
            idx = index_of.get(rid)
            if idx is not None:
                vectors[idx] = vec
    pred = {}
    for line in out.getvalue().splitlines():
        row = json.loads(line)
        pred[row["index"]] = row
    embedded = [g for g in gold if g["index"] in vectors]
    return {
        "replay": {"lines": report.lines, "ingested": report.ingested,
                   "skipped": len(report.skipped)},
        "linker": score_all(gold, pred, by_source=by_source),
        "gap_30min": score_all(gold, gap_baseline(gold, minutes=30), by_source=by_source),
        "cosine_0.75_24h": score_all(gold, cosine_baseline(embedded, vectors), by_source=by_source),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render(result: dict[str, Any], *, by_source: bool) -> str:
    """The scores as a plain table, the linker beside the baselines."""
    lines = [f"{'metric':<26}" + "".join(f"{s:>17}" for s in SYSTEMS)]
    for key in HEADLINE:
        lines.append(f"{key:<26}" + "".join(f"{_cell(result[s].get(key)):>17}" for s in SYSTEMS))
    if by_source:
        for src in result["linker"].get("by_source", {}):
            lines.append(f"\n[{src}]")
            for key in BY_SOURCE:
                lines.append(f"{key:<26}" + "".join(
                    f"{_cell(result[s]['by_source'][src].get(key)):>17}" for s in SYSTEMS))
    return "\n".join(lines)


@click.group("eval")
def eval_group() -> None:
    """Measure the appliance against gold data."""


@eval_group.command("threads")
@click.argument("gold_path", metavar="GOLD.jsonl",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by-source", is_flag=True, help="Also score each gold `source` separately.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def eval_threads(gold_path: Path, by_source: bool, as_json: bool) -> None:
    """Replay GOLD.jsonl through the pipeline and score the threads beside two baselines."""
    gold = load_gold(gold_path)
    result = replay_and_score(gold_path, gold, by_source=by_source)
    if as_json:
        emit_json(result)
        return
    r = result["replay"]
    click.echo(f"{gold_path.name}: {r['ingested']} prompts replayed ({r['skipped']} skipped).\n")
    click.echo(render(result, by_source=by_source))


COMMANDS = [eval_group]
