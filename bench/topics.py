"""Topic benchmark: topic ARI on the dev stream and the cost of assigning one prompt.

Redacts and embeds the dev stream once (real Presidio and llama.cpp), then runs
`topics.TopicAssigner` over a scratch SQLCipher store with three sources of
thread ids: the gold threads (what a perfect linker would hand over), one
thread per prompt (no linker at all), and the current linker's replay output
(`--replay out.jsonl` from `semtrace replay`). "emitted" scores the ids handed
out at ingest (what replay writes); "resolved" scores them after refinement
merges. Then times `assign` on a synthetic stream with thousands of topics.
Prints figures; asserts nothing.

    .venv/bin/python bench/topics.py [--replay OUT.jsonl] [--synthetic 50000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.config import load_policies  # noqa: E402
from appliance.ingest import parse_line  # noqa: E402
from appliance.keys import Keyring  # noqa: E402
from appliance.store import Store  # noqa: E402
from appliance.topics import TopicAssigner  # noqa: E402

DEV = Path(__file__).resolve().parents[2] / "shared" / "bench" / "threads-dev.jsonl"


def ari(a: Sequence[object], b: Sequence[object]) -> float:
    """Adjusted Rand index of two labelings."""
    _, ai = np.unique(np.asarray([str(x) for x in a]), return_inverse=True)
    _, bi = np.unique(np.asarray([str(x) for x in b]), return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.int64)
    np.add.at(table, (ai, bi), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) // 2).sum())

    n = pairs(np.array([len(ai)]))
    index, ra, rb = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = ra * rb / n
    top = (ra + rb) / 2 - expected
    return (index - expected) / top if top else 1.0


def embed_dev(rows: list[dict[str, object]], cache: Path) -> tuple[list[str], np.ndarray]:
    """Redacted texts and vectors of the dev stream (as the pipeline computes them)."""
    from appliance.embed import LlamaEmbedder
    from appliance.redact import Redactor

    pol = load_policies()
    redactor = Redactor(pol.redaction, cache_dir=cache)
    embedder = LlamaEmbedder(pol.correlation.embedding)
    texts = [redactor.redact(parse_line(json.dumps(r), max_text_chars=32768,
                                        default_request_id=f"l{i}", default_tenant="d")).text
             for i, r in enumerate(rows)]
    vecs = np.vstack([embedder.embed(texts[i:i + 64])[0] for i in range(0, len(texts), 64)])
    return texts, vecs.astype(np.float32)


def assign_all(rows: list[dict[str, object]], texts: list[str], vecs: np.ndarray,
               threads: Sequence[str], *, with_user: bool) -> tuple[list[str | None],
                                                                     list[str | None], float]:
    """Emitted and resolved topic per prompt, and mean ms per assign."""
    tmp = Path(tempfile.mkdtemp(prefix="semtrace-topics-"))
    store = Store.open(tmp, Keyring.random())
    ta = TopicAssigner(store, load_policies().privacy)
    out: list[str | None] = []
    t0 = time.perf_counter()
    for i, r in enumerate(rows):
        ts = datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00"))
        out.append(ta.assign(tenant="acme", thread_id=threads[i], vector=vecs[i], text=texts[i],
                             synthetic=False, user=str(r["user_id"]) if with_user else None,
                             ts=ts))
    ms = (time.perf_counter() - t0) / len(rows) * 1e3
    resolved = [ta.resolve("acme", t) if t else None for t in out]
    store.close()
    return out, resolved, ms


def topic_ari(rows: list[dict[str, object]], topics: Sequence[str | None]) -> float:
    keep = [i for i, r in enumerate(rows) if r["gold_topic_id"] is not None]
    return ari([rows[i]["gold_topic_id"] for i in keep],
               [topics[i] if topics[i] is not None else f"single{i}" for i in keep])


def dev_figures(replay: Path | None) -> None:
    rows = [json.loads(x) for x in DEV.read_text().splitlines()]
    t0 = time.perf_counter()
    texts, vecs = embed_dev(rows, Path(tempfile.mkdtemp(prefix="semtrace-cache-")))
    print(f"dev stream: {len(rows)} prompts redacted and embedded in "
          f"{time.perf_counter() - t0:.0f} s")
    modes: list[tuple[str, list[str], bool]] = [
        ("gold threads, user known", [str(r["gold_thread_id"]) for r in rows], True),
        ("one thread per prompt, user known", [str(i) for i in range(len(rows))], True),
        ("one thread per prompt, no user", [str(i) for i in range(len(rows))], False),
    ]
    if replay is not None:
        pred = {json.loads(x)["index"]: json.loads(x) for x in replay.read_text().splitlines()}
        modes.append(("replay threads, no user", [str(pred[i]["thread_id"])
                                                  for i in range(len(rows))], False))
        emitted = [pred[i].get("topic_id") for i in range(len(rows))]
        print(f"  {'replay output as written':<36} topic ARI {topic_ari(rows, emitted):.3f}")
    for name, threads, with_user in modes:
        out, resolved, ms = assign_all(rows, texts, vecs, threads, with_user=with_user)
        print(f"  {name:<36} topic ARI emitted {topic_ari(rows, out):.3f}, resolved "
              f"{topic_ari(rows, resolved):.3f}; {len(set(resolved))} topics; "
              f"{ms:.3f} ms/prompt")


def synthetic_timing(n: int, centres: int = 3000) -> None:
    """Per-assign latency on n clustered vectors (thousands of live topics)."""
    rng = np.random.default_rng(0)
    c = rng.standard_normal((centres, 384)).astype(np.float32)
    pick = rng.integers(0, centres, n)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    # cosine ~0.65 to the centre, ~0.4 between two prompts of one topic
    vecs = c[pick] + 0.06 * rng.standard_normal((n, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)

    def word(x: int) -> str:
        return "".join(chr(97 + (x // 26**k) % 26) for k in range(4))

    words = [f"{word(p)} {word(p + 7)} {word(int(x))}" for p, x in
             zip(pick, rng.integers(0, 20_000, n), strict=True)]
    tmp = Path(tempfile.mkdtemp(prefix="semtrace-topics-"))
    store = Store.open(tmp, Keyring.random())
    ta = TopicAssigner(store, load_policies().privacy)
    lat = []
    for i in range(n):
        t = time.perf_counter()
        ta.assign(tenant="acme", thread_id=f"t{i}", vector=vecs[i], text=words[i],
                  synthetic=False, user=f"u{i % 500}")
        lat.append((time.perf_counter() - t) * 1e3)
    live = len({ta.resolve("acme", t) for t in ta._threads.values() if t})
    print(f"synthetic: {n:,} prompts, {live:,} live topics: assign p50 "
          f"{statistics.median(lat):.3f} ms, p99 {np.percentile(lat, 99):.3f} ms, mean "
          f"{np.mean(lat):.3f} ms (refinement included), max {max(lat):.0f} ms")
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replay", type=Path, default=None,
                    help="Output of `semtrace replay` on the dev stream, to score its threads.")
    ap.add_argument("--synthetic", type=int, default=50_000)
    args = ap.parse_args()
    if DEV.exists():
        dev_figures(args.replay)
    else:
        print(f"{DEV} not found; skipping topic ARI")
    if args.synthetic:
        synthetic_timing(args.synthetic)


if __name__ == "__main__":
    main()
