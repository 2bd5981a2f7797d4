"""What `stats incident` lists on a small tenant: topic rows per release, each topic its own
group (before) or the topics of fewer than `k_min_users` people as one row (now).

The same week of 80 people and topics as bench/topic_rows.py (its `week`: the wide stream
through `topics.TopicAssigner` on gold threads, one refinement). The window is the week's
last `--window-days` days, the baseline the days before (threads by their first turn).
`--runs` releases are drawn each way through `analytics.incident_lifts` and the real
`PrivacyGate` (OpenDP, the shipped privacy.toml). Per release: topic rows shown, rows of
topics under k people, those marked significant (`*`, a rise beyond the noise), and now
the other-topics row. `stats blocks` folds the same way; this stream has no guardrail
block, so bench/block_rows.py measures it on synthetic blocks. `--threads linker`: the
week's threads are the shipped linker's (bench/linker_week.py), and `linking` says how they
stand against the gold ones. Prints figures; asserts nothing.

    .venv/bin/python bench/incident_rows.py [--runs 100] [--window-days 2]
                                            [--threads gold|linker] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from topic_rows import (  # noqa: E402
    END,
    START,
    each_release,
    scratch,
    summary,
    threads_option,
    week,
)

from appliance import analytics  # noqa: E402
from appliance.analytics import OTHER_TOPICS, ThreadRow  # noqa: E402
from appliance.config import load_policies  # noqa: E402


def draw(threads: list[ThreadRow], people: dict[str, int], runs: int, days: int
         ) -> dict[str, Any]:
    """`runs` releases each way; per release the figures named in the module doc."""
    cfg = load_policies().privacy
    k = cfg.k_min_users
    cfg = cfg.model_copy(update={"epsilon_per_day": 1e9, "cross_user_topics": {"t": True}})
    shared = frozenset(t for t, n in people.items() if n >= k)
    split = END - timedelta(days=days)
    window = [t for t in threads if t.turns[0].ts >= split]
    base = [t for t in threads if t.turns[0].ts < split]
    tmp, store, gate = scratch("semtrace-incident-rows-", cfg)
    out: dict[str, list[float]] = defaultdict(list)
    for way, fold in each_release(store, runs, shared):
        rep = analytics.incident_lifts(window, base, gate, tenant="t", start=split,
                                       end=END, labels={}, shared=fold,
                                       baseline_window=(START, split))
        topics = [r for r in rep.rows if r.dimension == "topic"]
        few = [r for r in topics if r.key not in (OTHER_TOPICS, analytics.NO_TOPIC)
               and people.get(r.key, 0) < k]
        out[f"{way}_topic_rows"].append(len(topics))
        out[f"{way}_small_rows"].append(len(few))
        out[f"{way}_small_significant"].append(sum(r.significant for r in few))
        out[f"{way}_significant"].append(sum(r.significant for r in topics))
        other = next((r for r in topics if r.key == OTHER_TOPICS), None)
        if fold is not None:
            out["now_other_shown"].append(float(other is not None))
            out["now_other_significant"].append(float(bool(other and other.significant)))
    return summary(store, tmp, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--window-days", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    threads_option(ap)
    args = ap.parse_args()
    threads, people, _, linking = week(args.threads)
    figures = draw(threads, people, args.runs, args.window_days)
    report = {"runs": args.runs, "window_days": args.window_days, "threads_from": args.threads,
              "linking": linking, "releases": figures}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    if linking:
        print("linking:", ", ".join(f"{k} {v}" for k, v in linking.items()))
    for key, v in figures.items():
        print(f"  {key:<24} median {v['median']:.1f}  mean {v['mean']:.1f}  max {v['max']:.1f}")


if __name__ == "__main__":
    main()
