"""Did a change to redaction change what is stored? Digests of redacted texts, compared.

usage: .venv/bin/python bench/redact_digest.py --out FILE.json DATA.jsonl ...
       .venv/bin/python bench/redact_digest.py --compare BEFORE.json AFTER.json

Each prompt of the JSONL files (a "text" key per line: /work/shared/bench/threads-*.jsonl,
pii-*.jsonl) is redacted as the service does it (`Redactor.redact_many`, batches of 64, the
default policy) and the sha256 of its redacted text (typed placeholders, or "unredactable")
is written, never the text. Run it on the code before and after a change, then `--compare`:
how many prompts' redacted texts differ (their file and line numbers), exit 1 if any do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH = 64


def digests(paths: list[Path]) -> dict[str, list[str]]:
    """File name -> the sha256 of each line's redacted text ("unredactable": refused)."""
    from appliance.config import RedactionSettings, load_policy
    from appliance.records import Prompt, Unredactable
    from appliance.redact import Redactor

    out: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        redactor = Redactor(load_policy("redaction", RedactionSettings), cache_dir=Path(tmp))
        ts = datetime(2026, 1, 1, tzinfo=UTC)
        for path in paths:
            texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")
                     if line.strip()]
            found: list[str] = []
            for i in range(0, len(texts), BATCH):
                prompts = [Prompt(request_id=f"r{j}", tenant="t", user_id="u", ts=ts, text=t)
                           for j, t in enumerate(texts[i:i + BATCH], start=i)]
                for r in redactor.redact_many(prompts):
                    found.append("unredactable" if isinstance(r, Unredactable)
                                 else hashlib.sha256(r.text.encode()).hexdigest())
                print(f"{path.name}: {len(found):,} / {len(texts):,}", end="\r",
                      file=sys.stderr, flush=True)
            print(file=sys.stderr)
            out[path.name] = found
    return out


def compare(before: dict[str, list[str]], after: dict[str, list[str]]) -> int:
    """Print the prompts whose redacted text differs; 1 if any do (or a file is missing)."""
    changed = 0
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, []), after.get(name, [])
        if len(old) != len(new):
            print(f"{name}: {len(old)} prompts before, {len(new)} after")
            changed += 1
            continue
        lines = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
        print(f"{name}: {len(old):,} prompts, {len(lines)} redacted differently"
              + (f" (lines {', '.join(str(i + 1) for i in lines[:20])})" if lines else ""))
        changed += len(lines)
    return 1 if changed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", type=Path, help="JSONL files with a text per line")
    parser.add_argument("--out", type=Path, help="write the digests here (JSON)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="compare two digest files")
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        return compare(before, after)
    if not args.data or args.out is None:
        parser.error("give JSONL files and --out, or --compare BEFORE AFTER")
    missing = [str(p) for p in args.data if not p.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    args.out.write_text(json.dumps(digests(args.data)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
