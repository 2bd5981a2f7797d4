"""An unrelated question hours after an unfinished one: the linker's decision by gap.

usage: .venv/bin/python bench/pause_repro.py [--weights FILE] [--json]

One user, one earlier prompt, then a second prompt after each gap (docs/linking.md, "Known:
an unrelated question joins an unfinished thread"). Two pairs: "What's the weather in
Paris?" then the unrelated "What is the capital of Peru?" (should start a thread at every
gap past a few minutes), and a question on the replication crisis then "Going back to the
replication point, ..." (a real follow-up after a night: should continue). Each pair and
gap is a fresh user of the real pipeline (Presidio, the bundled embedding model, an
ephemeral encrypted store); the linker is the one `--weights` names (default: the
policy's). Prints the link probability, the pair model's probability of the earlier turn
and the position per gap.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.config import load_policies  # noqa: E402
from appliance.link import make_linker  # noqa: E402
from appliance.records import Prompt  # noqa: E402

GAPS_H = (0.1, 0.25, 1, 2, 3.5, 4, 4.5, 5, 5.5, 5.7, 6, 8, 10, 12, 16, 20, 24)
PAIRS = {
    "unrelated": ("What's the weather in Paris?", "What is the capital of Peru?"),
    "going_back": ("Why did so many psychology studies fail to replicate?",
                   "Going back to the replication point, which fields were hit hardest?"),
}
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def measure(weights: Path | None) -> dict[str, list[dict[str, Any]]]:
    """Per pair and gap: one fresh user's two prompts through the real pipeline."""
    from appliance.cli.replay import _replay_runtime
    from appliance.embed import LlamaEmbedder
    from appliance.index import VectorIndex
    from appliance.pipeline import Pipeline
    from appliance.redact import Redactor

    pol = load_policies()
    s = pol.correlation
    if weights is not None:
        s = s.model_copy(update={"weights_file": str(weights.resolve())})
    out: dict[str, list[dict[str, Any]]] = {}
    embedder = LlamaEmbedder(s.embedding)
    with _replay_runtime(None, None, None) as rt:
        pipe = Pipeline(store=rt.store, index=VectorIndex(embedder.dims), keyring=rt.keyring,
                        redactor=Redactor(pol.redaction), embedder=embedder,
                        linker=make_linker(s), policies=rt.policies)
        linker, seen = pipe.linker, []

        def kept(query: Any, cands: Any, threshold: float | None = None) -> Any:
            seen.append(link := linker(query, cands, threshold=threshold))
            return link

        pipe.linker = kept
        for name, (first, later) in PAIRS.items():
            rows = []
            for gap in GAPS_H:
                user = f"{name}-{gap}"
                pipe.process([Prompt(request_id=f"{user}-a", tenant="t", user_id=user, ts=T0,
                                     text=first)])
                seen.clear()
                o = pipe.process([Prompt(request_id=f"{user}-b", tenant="t", user_id=user,
                                         ts=T0 + timedelta(hours=gap), text=later)])[0]
                ev = seen[-1].evidence if seen else {}
                rows.append({"gap_h": gap, "score": ev.get("score"),
                             "pair": ev.get("parent_score"), "opener": ev.get("opener"),
                             "similarity": None if o.similarity is None
                             else round(o.similarity, 3), "position": o.position,
                             "joined": o.parent_id is not None})
            out[name] = rows
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None,
                    help="a linker weights file (default: the policy's)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.weights is not None and not a.weights.is_file():
        print(f"No weights file at {a.weights}.", file=sys.stderr)
        return 2
    res = measure(a.weights)
    if a.json:
        print(json.dumps(res, indent=1))
        return 0
    for name, rows in res.items():
        print(f"{name}: " + ", ".join(f"{r['gap_h']} h {r['score']:.2f} {r['position']}"
                                      + ("" if r["joined"] else " (apart)") for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
