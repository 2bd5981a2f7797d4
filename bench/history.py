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

`--mixed`: each source is its own tenant (one deployment each), and only half
of its users (by a hash of the user id) send `history`; the other half's prompts
are scored, replayed twice: with each tenant's link threshold calibrated from
the first half's history-linked traffic (the shipped policy) and with
`[calibration] enabled = false` (the policy threshold). The model is the
shipped one, trained on these very sources, so this shows the product path at
work, not a held-out estimate (that is `bench/train_linker.py --calibrate`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
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


def replay_and_score(gold: Path, stream: Path, tmp: Path,
                     env: dict[str, str] | None = None, tag: str = "") -> dict[str, Any]:
    """`semtrace replay` of `stream` in an ephemeral store, scored against `gold` (the
    predictions of prompts `gold` does not hold are dropped first)."""
    pred = tmp / f"pred-{stream.stem}{tag}.jsonl"
    run = subprocess.run([sys.executable, "-m", "appliance", "replay", str(stream), "--out",
                          str(pred), "--json"], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if run.returncode != 0:
        raise SystemExit(f"replay of {stream.name} failed: {run.stderr.strip()[-400:]}")
    wanted = {json.loads(line)["index"] for line in gold.open(encoding="utf-8") if line.strip()}
    kept = [line for line in pred.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["index"] in wanted]
    pred.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    scored = subprocess.run([sys.executable, str(BENCH / "score_threads.py"), str(gold),
                             str(pred), "--by-source"], capture_output=True, text=True,
                            check=True)
    result: dict[str, Any] = json.loads(scored.stdout)
    return result


def sends_history(user: str) -> bool:
    """The half of the users whose gateway sends `history` in `--mixed`."""
    return hashlib.sha256(user.encode()).digest()[0] % 2 == 0


def mixed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each source its own tenant; history on the prompts of half the users only."""
    out = []
    for row in with_history(rows):
        row = {**row, "tenant": row["source"]}
        if not sends_history(row["user_id"]):
            del row["history"]
        out.append(row)
    return out


def run_mixed(name: str, rows: list[dict[str, Any]], tmp: Path) -> dict[str, Any]:
    """The plain half's scores, calibration on and off."""
    stream = tmp / f"threads-{name}-mixed.jsonl"
    stream.write_text("".join(json.dumps(r) + "\n" for r in mixed(rows)), encoding="utf-8")
    plain = tmp / f"threads-{name}-plain-half.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows
                             if not sends_history(r["user_id"])), encoding="utf-8")
    off = tmp / "policies-calibration-off"
    if not off.exists():
        from appliance.config import policy_dir

        shutil.copytree(policy_dir(), off)
        toml = off / "correlation.toml"
        toml.write_text(toml.read_text(encoding="utf-8").replace(
            "enabled = true", "enabled = false"), encoding="utf-8")
    return {"mode": "mixed", "with": replay_and_score(plain, stream, tmp, tag="-on"),
            "without": replay_and_score(plain, stream, tmp,
                                        {"SEMTRACE_POLICY_DIR": str(off)}, "-off")}


def _row(name: str, without: dict[str, Any], with_: dict[str, Any]) -> str:
    cells = [f"{without.get(m, 0):.3f} / {with_.get(m, 0):.3f}" for m in METRICS]
    return f"| {name} | {without.get('prompts', '')} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="dev,wide", help="gold streams under ../shared/bench")
    ap.add_argument("--json", action="store_true", help="print the scores as JSON")
    ap.add_argument("--table-from", type=Path, help="print the table of a saved --json run")
    ap.add_argument("--mixed", action="store_true",
                    help="half the users send history, each source a tenant: the other "
                         "half scored with calibration on and off (see above)")
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
            if args.mixed:
                print(f"{name}: {len(rows)} prompts, half the users with history, replaying "
                      "with calibration off and on ...", file=sys.stderr)
                results[name] = run_mixed(name, rows, tmp)
                continue
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
    pair = ("calibration off / on" if any(r.get("mode") == "mixed" for r in results.values())
            else "without / with")
    print(f"| stream / source | prompts | pairwise F1 ({pair}) | new-thread F1 | "
          "parent accuracy |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(_row(f"**{name}**", r["without"], r["with"]))
        for src, scores in r["without"].get("by_source", {}).items():
            print(_row(f"{name}: {src}", scores, r["with"]["by_source"][src]))
    cross = {n: (r["without"].get("cross_user_links"), r["with"].get("cross_user_links"))
             for n, r in results.items()}
    print(f"\ncross-user links ({pair.replace(' / ', ', ')}): {cross}")


if __name__ == "__main__":
    main()
