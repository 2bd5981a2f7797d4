"""Threading with and without the gateway's message history.

usage: .venv/bin/python bench/history.py [--streams dev,wide] [--json | --table-from FILE]

Each gold stream (`../shared/bench/threads-<name>.jsonl`) is replayed twice
through the whole pipeline (`semtrace replay`, ephemeral store): once as it is
(content, time and session hints only) and once with a synthesized `history`
on every prompt: the previous user turns of its gold thread, oldest first, as
SHA-256 digests (the streams hold no assistant answers, so none are sent). A
thread's first prompt gets an empty history. Both runs are scored with
`score_threads.py --by-source`; the table prints pairwise F1, new-thread F1 and
parent accuracy per source. The synthesized stream lives in a temporary
directory and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.ingest import content_digest  # noqa: E402

# ../shared/bench beside the repo (a worktree may sit one level deeper)
BENCH = next((p / "shared" / "bench" for p in REPO.parents
              if (p / "shared" / "bench" / "score_threads.py").exists()),
             REPO.parent / "shared" / "bench")
METRICS = ("pair_F1", "newthread_F1", "parent_acc")


def with_history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with `history`: the digests of the earlier user turns of its gold thread."""
    seen: dict[tuple[str, str], list[str]] = {}
    out = []
    for row in sorted(rows, key=lambda r: r["index"]):
        key = (row["user_id"], row["gold_thread_id"])
        earlier = seen.setdefault(key, [])
        out.append({**row, "history": [{"role": "user", "sha256": d} for d in earlier]})
        earlier.append(content_digest(row["text"]))
    return out


def replay_and_score(gold: Path, stream: Path, tmp: Path) -> dict[str, Any]:
    """`semtrace replay` of `stream` in an ephemeral store, scored against `gold`."""
    pred = tmp / f"pred-{stream.stem}.jsonl"
    run = subprocess.run([sys.executable, "-m", "appliance", "replay", str(stream), "--out",
                          str(pred), "--json"], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"replay of {stream.name} failed: {run.stderr.strip()[-400:]}")
    scored = subprocess.run([sys.executable, str(BENCH / "score_threads.py"), str(gold),
                             str(pred), "--by-source"], capture_output=True, text=True,
                            check=True)
    result: dict[str, Any] = json.loads(scored.stdout)
    return result


def _row(name: str, without: dict[str, Any], with_: dict[str, Any]) -> str:
    cells = [f"{without.get(m, 0):.3f} / {with_.get(m, 0):.3f}" for m in METRICS]
    return f"| {name} | {without.get('prompts', '')} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="dev,wide", help="gold streams under ../shared/bench")
    ap.add_argument("--json", action="store_true", help="print the scores as JSON")
    ap.add_argument("--table-from", type=Path, help="print the table of a saved --json run")
    args = ap.parse_args()
    if args.table_from:
        print_table(json.loads(args.table_from.read_text(encoding="utf-8")))
        return
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="semtrace-history-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for name in args.streams.split(","):
            gold = BENCH / f"threads-{name}.jsonl"
            rows = [json.loads(line) for line in gold.open(encoding="utf-8") if line.strip()]
            synth = tmp / f"threads-{name}-history.jsonl"
            with synth.open("w", encoding="utf-8") as fh:
                for row in with_history(rows):
                    fh.write(json.dumps(row) + "\n")
            print(f"{name}: {len(rows)} prompts, replaying without and with history ...",
                  file=sys.stderr)
            results[name] = {"without": replay_and_score(gold, gold, tmp),
                             "with": replay_and_score(gold, synth, tmp)}
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print_table(results)


def print_table(results: dict[str, dict[str, Any]]) -> None:
    """Markdown table: per stream and source, each figure without / with history."""
    print("| stream / source | prompts | pairwise F1 (without / with) | new-thread F1 | "
          "parent accuracy |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(_row(f"**{name}**", r["without"], r["with"]))
        for src, scores in r["without"].get("by_source", {}).items():
            print(_row(f"{name}: {src}", scores, r["with"]["by_source"][src]))
    cross = {n: (r["without"].get("cross_user_links"), r["with"].get("cross_user_links"))
             for n, r in results.items()}
    print(f"\ncross-user links (without, with): {cross}")


if __name__ == "__main__":
    main()
