"""What `stats topics` lists on a small tenant: rows per release, each topic its own group
(before) or the topics of fewer than `k_min_users` people as one row (now).

The first week of the wide stream (2026-11-30 to 12-06: 80 people) goes through
`topics.TopicAssigner` (production code, a scratch SQLCipher store, the stream redacted and
embedded by the real Presidio and llama.cpp and cached: bench/topic_data.py) on its gold
threads (a perfect linker; bench/topics.py `run`) and one refinement; each topic's people
are what that refinement publishes (`topics.rows.topic_rows`). Then `--runs` releases of the
week are drawn through `analytics.topic_stats` and the real `PrivacyGate` (OpenDP, the
shipped privacy.toml: topics epsilon 2, k_min_users 5), each way. Per release: rows shown,
rows of topics under k people, and of those the ones ranked above a shown topic of at least
`--big` people (by noisy thread count, as `stats topics` sorts); now, the other-topics row
(shown last) against the exact count of its threads. Prints figures; asserts nothing.

`--threads linker`: the week's threads are those the shipped linker finds, the week
replayed through the whole pipeline into an ephemeral SQLCipher store and read back as
`stats` reads it (bench/linker_week.py: cached, so a rerun on the same code reads the same
threads in seconds); the exact counts then also say how its threads stand against the gold
ones (`linking`).

    .venv/bin/python bench/topic_rows.py [--runs 100] [--big 20] [--threads gold|linker]
                                         [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from topic_data import Stream, load_stream  # noqa: E402
from topics import run, settings, thread_ids  # noqa: E402

from appliance import analytics  # noqa: E402
from appliance.analytics import OTHER_TOPICS, ThreadRow, Turn  # noqa: E402
from appliance.config import load_policies  # noqa: E402
from appliance.keys import Keyring  # noqa: E402
from appliance.privacy import PrivacyGate  # noqa: E402
from appliance.store import Store  # noqa: E402
from appliance.topics.rows import topic_rows  # noqa: E402

START = datetime(2026, 11, 30, tzinfo=UTC)
END = START + timedelta(days=7)


def week(threads_from: str = "gold"
         ) -> tuple[list[ThreadRow], dict[str, int], dict[str, int], dict[str, int]]:
    """The week's threads in their topics after refinement; people and threads per topic;
    with `threads_from` "linker", how the linker's threads compare with gold (else {})."""
    if threads_from == "linker":
        from linker_week import linker_week

        return linker_week(START, END)
    full = load_stream("wide")
    keep = [i for i, r in enumerate(full.rows)
            if START <= datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) < END]
    stream = Stream("wide", [full.rows[i] for i in keep], [full.texts[i] for i in keep],
                    full.vectors[keep])
    threads = thread_ids(stream, "gold", None)
    _, final, _, ta = run(stream, threads, settings())
    people = {t.topic_id: t.users
              for t in topic_rows(ta._state("acme"), load_policies().privacy.k_min_users)}
    turns: dict[str, tuple[str, list[Turn]]] = {}
    for i, r in enumerate(stream.rows):
        ts = datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))
        user, ts_turns = turns.setdefault(threads[i], (str(r["user_id"]), []))
        ts_turns.append(Turn(ts, "continuation" if ts_turns else "new", None, "ok", "m", 0,
                             final[i]))
    rows = [ThreadRow(tid, user, tuple(ts)) for tid, (user, ts) in turns.items()]
    return rows, people, dict(Counter(t.topic for t in rows)), {}


def threads_option(ap: argparse.ArgumentParser) -> None:
    """`--threads gold|linker`: whose threads the week's topics are built from."""
    ap.add_argument("--threads", choices=("gold", "linker"), default="gold",
                    help="gold threads (a perfect linker; cached, seconds) or the shipped "
                         "linker's (the week replayed through the pipeline: minutes, then "
                         "cached for the same code: seconds)")


def draw(threads: list[ThreadRow], people: dict[str, int], runs: int, big: int
         ) -> dict[str, Any]:
    """`runs` releases each way; per release the figures named in the module doc."""
    cfg = load_policies().privacy
    k = cfg.k_min_users
    cfg = cfg.model_copy(update={"epsilon_per_day": 1e9,
                                 "cross_user_topics": {"t": True}})
    shared = frozenset(t for t, n in people.items() if n >= k)
    small_threads = sum(1 for t in threads if t.topic not in shared | {analytics.NO_TOPIC})
    tmp, store, gate = scratch("semtrace-topic-rows-", cfg)
    out: dict[str, list[float]] = defaultdict(list)
    for way, fold in each_release(store, runs, shared):
        rep = analytics.topic_stats(threads, gate, tenant="t", start=START, end=END,
                                    labels={}, shared=fold)
        rows, few = count_rows(out, way, rep.rows, people, k, big)
        out[f"{way}_shared_rows"].append(len(rows) - len(few))
        other = next((r for r in rep.rows if r.key == OTHER_TOPICS), None)
        if fold is not None:
            out["now_other_shown"].append(float(other is not None))
            if other is not None:
                out["now_other_error"].append(abs(other.threads.value - small_threads))
                out["now_other_ci95"].append(other.threads.ci95)
    return summary(store, tmp, out)


def count_rows(out: dict[str, list[float]], way: str, shown: list[Any], people: dict[str, int],
               k: int, big: int) -> tuple[list[Any], list[Any]]:
    """Append one release's rows, rows of topics under `k` people and those of them ranked
    above a topic of `big`+ people to `out`; return the topic rows and the small ones."""
    rows = [r for r in shown if r.key not in (OTHER_TOPICS, analytics.NO_TOPIC)]
    few = [r for r in rows if people.get(r.key, 0) < k]
    large = [r.threads.value for r in rows if people.get(r.key, 0) >= big]
    out[f"{way}_rows"].append(len(shown))
    out[f"{way}_small_rows"].append(len(few))
    out[f"{way}_small_above_big"].append(
        sum(1 for r in few if large and r.threads.value > min(large)))
    return rows, few


def scratch(prefix: str, cfg: Any) -> tuple[Path, Store, PrivacyGate]:
    """A scratch store under a new temporary folder and a privacy gate on it (`cfg`: the
    privacy settings)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    store = Store.open(tmp, Keyring.random())
    return tmp, store, PrivacyGate(store.db, cfg)


def each_release(store: Store, runs: int, shared: frozenset[str]
                 ) -> Iterator[tuple[str, frozenset[str] | None]]:
    """`runs` times: ("before", None) then ("now", `shared`), each on a store with no
    release left (a fresh release each time)."""
    for _ in range(runs):
        for way, fold in (("before", None), ("now", shared)):
            store.db.execute("DELETE FROM dp_releases")
            yield way, fold


def summary(store: Store, tmp: Path, out: dict[str, list[float]]) -> dict[str, Any]:
    """Close the scratch store, remove its folder; each figure's median, max and mean."""
    store.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {key: {"median": statistics.median(v), "max": max(v), "mean": statistics.mean(v)}
            for key, v in out.items()}


def print_report(report: dict[str, Any], exact: dict[str, Any], figures: dict[str, Any], *,
                 as_json: bool) -> None:
    """The whole report as JSON, or the exact counts and each figure's median, mean, max."""
    if as_json:
        print(json.dumps(report, indent=1))
        return
    print("exact:", ", ".join(f"{k} {v}" for k, v in exact.items()))
    for key, v in figures.items():
        print(f"  {key:<24} median {v['median']:.1f}  mean {v['mean']:.1f}  max {v['max']:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--big", type=int, default=20, help="a large topic: this many people")
    ap.add_argument("--json", action="store_true")
    threads_option(ap)
    args = ap.parse_args()
    threads, people, sizes, linking = week(args.threads)
    k = load_policies().privacy.k_min_users
    shared = {t for t, n in people.items() if n >= k}
    exact = {"threads": len(threads), "people": len({t.user for t in threads}),
             "topics": len(people), "topics_of_k_people": len(shared),
             "their_threads": sum(n for t, n in sizes.items() if t in shared),
             "topics_under_k_people": len(people) - len(shared),
             "small_one_or_two_threads": sum(1 for t in people
                                             if t not in shared and sizes.get(t, 0) <= 2),
             "their_threads_under_k": sum(n for t, n in sizes.items()
                                          if t not in shared | {analytics.NO_TOPIC}),
             "threads_without_topic": sizes.get(analytics.NO_TOPIC, 0),
             "topics_of_big_people": sum(1 for n in people.values() if n >= args.big)}
    figures = draw(threads, people, args.runs, args.big)
    exact.update(linking)
    report = {"exact": exact, "runs": args.runs, "big": args.big, "threads_from": args.threads,
              "releases": figures}
    print_report(report, exact, figures, as_json=args.json)


if __name__ == "__main__":
    main()
