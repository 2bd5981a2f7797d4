"""Accuracy of the differentially private topic figures for tenants of 50, 200 and 1,000 users.

Replays the wide development stream (`shared/bench/threads-wide.jsonl`) as
thread metadata: its gold threads, each in its gold topic (the subject sources
and the others alike; TIAGE / Topical-Chat threads have no topic and count as
"(none)"). A tenant of N active users is N user-weeks drawn from the stream's
80 users x its weeks (with replacement above the pool's size), so per-user
activity is the stream's own. Each tenant is released `--runs` times through
`analytics.topic_stats` and the real `privacy.PrivacyGate` (OpenDP noise,
contribution bound, noisy k-suppression) with the shipped policy (the topics
release's epsilon, `release_epsilon.topics`), or with the epsilon given by
`--epsilon`; the error of a topic's thread count is measured against the exact
count (a withheld topic counts as a 100 % error).

Reports, per tenant size, for the topic nearest 5 % of the threads and over all
topics holding 3-8 %: the 95th percentile of |noisy - exact| / exact, the share
withheld, the 95th percentile over the releases that show the topic, and the
noise scale. Prints figures; asserts nothing.

    .venv/bin/python bench/dp_accuracy.py [--users 50 200 1000] [--runs 200]
                                          [--epsilon E ...] [--bound L]
                                          [--people-bound P] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from topic_data import STREAMS  # noqa: E402

from appliance import analytics  # noqa: E402
from appliance.analytics import ThreadRow, Turn  # noqa: E402
from appliance.config import PrivacySettings, load_policies  # noqa: E402
from appliance.keys import Keyring  # noqa: E402
from appliance.privacy import PrivacyGate  # noqa: E402
from appliance.store import Store  # noqa: E402

WEEK = timedelta(days=7)


def user_weeks() -> list[list[tuple[str, list[Turn]]]]:
    """Per (user, week) of the wide stream: its threads as (thread id, turns)."""
    rows = [json.loads(x) for x in STREAMS["wide"].read_text().splitlines() if x.strip()]
    start = datetime.fromisoformat(rows[0]["ts"].replace("Z", "+00:00"))
    threads: dict[tuple[str, int], dict[str, list[Turn]]] = defaultdict(dict)
    for r in rows:
        ts = datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))
        week = int((ts - start) / WEEK)
        turns = threads[(r["user_id"], week)].setdefault(r["gold_thread_id"], [])
        turns.append(Turn(ts, "new" if not turns else "follow_up", None, None, "m", 0,
                          r["gold_topic_id"]))
    full = int((datetime.fromisoformat(rows[-1]["ts"].replace("Z", "+00:00")) - start) / WEEK)
    return [list(v.items()) for (_, w), v in sorted(threads.items()) if w < full]


def tenant(pool: list[list[tuple[str, list[Turn]]]], users: int, rng: random.Random
           ) -> list[ThreadRow]:
    """Threads of a tenant of `users` active users (user-weeks drawn from the pool)."""
    picks = (rng.sample(range(len(pool)), users) if users <= len(pool)
             else [rng.randrange(len(pool)) for _ in range(users)])
    out = []
    for u, i in enumerate(picks):
        for tid, turns in pool[i]:
            out.append(ThreadRow(f"{u}:{tid}", f"user{u}", tuple(turns)))
    return out


def measure(threads: list[ThreadRow], cfg: PrivacySettings, runs: int) -> dict[str, Any]:
    """Relative errors of every topic's thread count over `runs` releases."""
    exact = Counter(t.topic for t in threads)
    people = Counter(topic for _, topic in {(t.user, t.topic) for t in threads})
    total = sum(exact.values())
    tmp = Path(tempfile.mkdtemp(prefix="semtrace-dp-"))
    store = Store.open(tmp, Keyring.random())
    gate = PrivacyGate(store.db, cfg)
    end = max(x.ts for t in threads for x in t.turns) + timedelta(seconds=1)
    errors: dict[str, list[float]] = defaultdict(list)
    scale = 0.0
    for _ in range(runs):
        store.db.execute("DELETE FROM dp_releases")  # a fresh release each run, not today's
        rep = analytics.topic_stats(threads, gate, tenant="t", start=end - WEEK, end=end,
                                    labels={})
        got = {r.key: r.threads for r in rep.rows}
        for topic, n in exact.items():
            fig = got.get(topic)
            errors[topic].append(1.0 if fig is None else abs(fig.value - n) / n)
            if fig is not None:
                scale = fig.noise_scale
    store.close()
    per_topic = {t: {"threads": n, "users": people[t], "share": n / total,
                     "p95_rel_error": float(np.percentile(errors[t], 95)),
                     "withheld": float(np.mean([e == 1.0 for e in errors[t]])),
                     "p95_rel_error_shown": float(np.percentile(
                         [e for e in errors[t] if e != 1.0] or [1.0], 95))}
                 for t, n in exact.items() if t != analytics.NO_TOPIC}
    near5 = min(per_topic.values(), key=lambda v: abs(v["share"] - 0.05))
    band = [v for v in per_topic.values() if 0.03 <= v["share"] <= 0.08]
    return {"threads": total, "count_noise_scale": scale, "topic_near_5pct": near5,
            "band_3_8pct_p95_rel_error_median": float(np.median(
                [v["p95_rel_error"] for v in band])) if band else None,
            "band_topics": len(band)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, nargs="*", default=[50, 200, 1000])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--epsilon", type=float, nargs="*", default=[],
                    help="epsilons of the topics release to try (default: the shipped one)")
    ap.add_argument("--bound", type=int, default=None, help="contribution_bound to try")
    ap.add_argument("--people-bound", type=int, default=None, help="people_bound to try")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    shipped = load_policies().privacy
    pool = user_weeks()
    report: dict[str, Any] = {"user_weeks_in_pool": len(pool), "results": []}
    for eps in args.epsilon or [shipped.epsilon_for("topics")]:
        cfg = shipped.model_copy(update={
            "release_epsilon": {**shipped.release_epsilon, "topics": eps},
            "epsilon_per_day": 1e9,
            "contribution_bound": args.bound or shipped.contribution_bound,
            "people_bound": args.people_bound or shipped.people_bound})
        for n in args.users:
            res = measure(tenant(pool, n, random.Random(n)), cfg, args.runs)
            res.update(users=n, topics_epsilon=eps, contribution_bound=cfg.contribution_bound)
            report["results"].append(res)
            near = res["topic_near_5pct"]
            print(f"  eps {eps:g} L {cfg.contribution_bound} users {n}: {res['threads']} threads,"
                  f" topic {100 * near['share']:.1f}% ({near['threads']} threads, "
                  f"{near['users']} users): p95 rel. error {100 * near['p95_rel_error']:.0f}%,"
                  f" withheld {100 * near['withheld']:.0f}%, shown: p95"
                  f" {100 * near['p95_rel_error_shown']:.0f}%, scale"
                  f" {res['count_noise_scale']:.1f}", file=sys.stderr)
    print(json.dumps(report, indent=1 if args.json else None))


if __name__ == "__main__":
    main()
