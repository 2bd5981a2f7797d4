"""Parity check: the bundled GGUF vs sentence-transformers on the source weights.

Run by models/build.sh in its conversion venv; prints the minimum cosine.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCES = [
    "What's the weather in Paris?",
    "How about tomorrow?",
    "Should I bring an umbrella?",
    "Actually, I meant the Paris in Texas.",
    "How do I reset my password?",
    "Tell me more about angel rounds for early-stage startups and how they are priced.",
    "Navigate to the nearest gas station with the shortest route, avoiding heavy traffic.",
    "thanks.",
]


def main(weights_dir: str) -> int:
    from sentence_transformers import SentenceTransformer

    from appliance.embed import LlamaEmbedder

    ref = SentenceTransformer(weights_dir, device="cpu").encode(SENTENCES, normalize_embeddings=True)
    ours, _ = LlamaEmbedder().embed(SENTENCES)
    cos = np.sum(ref * ours, axis=1)
    for s, c in zip(SENTENCES, cos, strict=True):
        print(f"{c:.5f}  {s}")
    print(f"min cosine {cos.min():.5f}")
    print(f"mean cosine {cos.mean():.5f}")
    return 0 if cos.min() >= 0.995 and cos.mean() >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
