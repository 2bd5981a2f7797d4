"""What `stats blocks` lists on a small tenant: rows per release, each topic its own group
(before) or the topics of fewer than `k_min_users` people as one row (now).

The same week of 80 people and topics as bench/topic_rows.py (its `week`: the wide stream
through `topics.TopicAssigner` on gold threads, one refinement). That stream has no
guardrail block, so the blocks are synthetic: each thread, with probability `--share`
(seeded by `--seed`; the same chance for every thread and topic, no rule on the data), has
one of its turns, drawn at random, marked `blocked`. `--runs` releases are drawn each way
through `analytics.block_stats` and the real `PrivacyGate` (OpenDP, the shipped
privacy.toml). Per release: rows shown, rows of topics under k people, of those the ones
ranked above a shown topic of at least `--big` people (by noisy thread count, as `stats
blocks` sorts), and now the other-topics row. `--threads linker`: the week's threads are
the shipped linker's (bench/linker_week.py; the blocks still synthetic, drawn the same way
on them). Prints figures; asserts nothing.

    .venv/bin/python bench/block_rows.py [--runs 100] [--share 0.15] [--seed 0]
                                         [--threads gold|linker] [--json]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from topic_rows import (  # noqa: E402
    END,
    START,
    count_rows,
    each_release,
    print_report,
    scratch,
    summary,
    threads_option,
    week,
)

from appliance import analytics  # noqa: E402
from appliance.analytics import OTHER_TOPICS, ThreadRow  # noqa: E402
from appliance.config import load_policies  # noqa: E402


def with_blocks(threads: list[ThreadRow], share: float, seed: int) -> list[ThreadRow]:
    """`threads`, each with probability `share` one turn of it (at random) blocked."""
    rng = random.Random(seed)
    out = []
    for t in threads:
        if rng.random() < share:
            i = rng.randrange(len(t.turns))
            turns = (*t.turns[:i], replace(t.turns[i], status="blocked"), *t.turns[i + 1:])
            t = replace(t, turns=turns)
        out.append(t)
    return out


def draw(threads: list[ThreadRow], people: dict[str, int], runs: int, big: int
         ) -> dict[str, Any]:
    """`runs` releases each way; per release the figures named in the module doc."""
    cfg = load_policies().privacy
    k = cfg.k_min_users
    cfg = cfg.model_copy(update={"epsilon_per_day": 1e9, "cross_user_topics": {"t": True}})
    shared = frozenset(t for t, n in people.items() if n >= k)
    tmp, store, gate = scratch("semtrace-block-rows-", cfg)
    out: dict[str, list[float]] = defaultdict(list)
    for way, fold in each_release(store, runs, shared):
        rep = analytics.block_stats(threads, gate, tenant="t", start=START, end=END,
                                    labels={}, shared=fold)
        count_rows(out, way, rep.rows, people, k, big)
        if fold is not None:
            out["now_other_shown"].append(
                float(any(r.key == OTHER_TOPICS for r in rep.rows)))
    return summary(store, tmp, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--share", type=float, default=0.15, help="threads with a block")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--big", type=int, default=20, help="a large topic: this many people")
    ap.add_argument("--json", action="store_true")
    threads_option(ap)
    args = ap.parse_args()
    threads, people, _, linking = week(args.threads)
    threads = with_blocks(threads, args.share, args.seed)
    k = load_policies().privacy.k_min_users
    blocked = [t for t in threads if t.blocks]
    by_topic: dict[str, set[str]] = defaultdict(set)
    for t in blocked:
        by_topic[t.topic].add(t.user)
    exact = {"threads": len(threads), "blocked_threads": len(blocked),
             "blocked_people": len({t.user for t in blocked}),
             "topics_with_a_block": len(by_topic),
             "of_k_people": sum(1 for t in by_topic if people.get(t, 0) >= k), **linking}
    figures = draw(threads, people, args.runs, args.big)
    report = {"exact": exact, "runs": args.runs, "share": args.share, "seed": args.seed,
              "threads_from": args.threads, "releases": figures}
    print_report(report, exact, figures, as_json=args.json)


if __name__ == "__main__":
    main()
