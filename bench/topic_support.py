"""Topics of a support-like stream, replayed through the whole pipeline: do distinct
subjects stay distinct topics?

Writes `support_stream.stream(...)` (eight subjects by default: password resets, API
401s, refunds, shoe returns, parcel tracking, invoices, cancellations, CSV exports;
several people and conversations each), replays it with `semtrace replay` into a
fresh store (real Presidio, the bundled llama.cpp model, the linker, SQLCipher), and
reports per topic which subjects its prompts are about, the subject ARI of the
topics, and how many of the linker's threads mix two subjects (a user's next
conversation linked to the previous one). With `--privacy KEY=VALUE` the replay runs
with those `privacy.toml` values (e.g. `topic_merge_ratio=0.5`). Everything is written
under a private temp dir and removed.

    .venv/bin/python bench/topic_support.py [--threads 16] [--users 8] [--seed 7]
        [--subjects password api401 refund shoes] [--privacy topic_merge_ratio=0.5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support_stream import SUBJECTS, stream  # noqa: E402
from topics import ari  # noqa: E402

from appliance.config import policy_dir  # noqa: E402


def replay(rows: list[dict[str, Any]], privacy: dict[str, str], tmp: Path) -> list[dict[str, Any]]:
    """`semtrace replay` of the rows into a fresh store; its output lines."""
    policies = tmp / "policies"
    shutil.copytree(policy_dir(), policies)
    toml = policies / "privacy.toml"
    text = toml.read_text()
    for key, value in privacy.items():
        line = f"{key} = {value}"
        text, n = re.subn(rf"(?m)^{key} = .*$", line, text)
        if not n:  # not in the shipped file: add it before the first table
            text = text.replace("\n[", f"\n{line}\n\n[", 1)
    toml.write_text(text)
    pw = tmp / "passphrase"
    pw.write_text(os.urandom(24).hex())
    pw.chmod(0o600)
    src, out, data = tmp / "in.jsonl", tmp / "out.jsonl", tmp / "data"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "SEMTRACE_POLICY_DIR": str(policies)}
    cred = ["--data-dir", str(data), "--passphrase-file", str(pw)]
    cli = [sys.executable, "-m", "appliance"]
    subprocess.run([*cli, "init", *cred], env=env, check=True, capture_output=True)
    subprocess.run([*cli, "replay", str(src), "--out", str(out), *cred], env=env, check=True,
                   capture_output=True)
    return [json.loads(x) for x in out.read_text().splitlines()]


def report(rows: list[dict[str, Any]], out: list[dict[str, Any]]) -> dict[str, Any]:
    """Subjects per topic, subject ARI, and the linker's threads that mix subjects."""
    topics: dict[str, Counter[str]] = defaultdict(Counter)
    threads: dict[str, set[str]] = defaultdict(set)
    for r, o in zip(rows, out, strict=True):
        topics[str(o["topic_id"])][r["subject"]] += 1
        threads[o["thread_id"]].add(r["subject"])
    by_size = sorted(topics.values(), key=lambda c: -sum(c.values()))
    main = {s: max(by_size, key=lambda c, s=s: c[s]) for s in {r["subject"] for r in rows}}
    return {
        "prompts": len(rows),
        "subjects": len(main),
        "topics": len(topics),
        "subject_ari": round(ari([r["subject"] for r in rows], [o["topic_id"] for o in out]), 3),
        # subjects whose largest topic is also another subject's largest: merged
        "merged_subjects": sorted(s for s, c in main.items()
                                  if sum(1 for t in main.values() if t is c) > 1),
        "threads": len(threads),
        "threads_mixing_subjects": sum(1 for v in threads.values() if len(v) > 1),
        "topics_by_size": [dict(c.most_common()) for c in by_size],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", nargs="*", default=list(SUBJECTS), choices=list(SUBJECTS))
    ap.add_argument("--threads", type=int, default=16, help="conversations per subject")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--privacy", nargs="*", default=[], metavar="KEY=VALUE",
                    help="privacy.toml values for the replay")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    privacy = dict(p.split("=", 1) for p in args.privacy)
    rows = stream(args.subjects, threads=args.threads, seed=args.seed, users=args.users)
    tmp = Path(tempfile.mkdtemp(prefix="semtrace-support-"))
    try:
        result = {"privacy": privacy, **report(rows, replay(rows, privacy, tmp))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['prompts']} prompts, {result['subjects']} subjects -> {result['topics']} "
          f"topics; subject ARI {result['subject_ari']}; merged: "
          f"{', '.join(result['merged_subjects']) or 'none'}; threads mixing subjects "
          f"{result['threads_mixing_subjects']} of {result['threads']}")
    for c in result["topics_by_size"]:
        print("  " + ", ".join(f"{s} {n}" for s, n in c.items()))


if __name__ == "__main__":
    main()
