"""The bench streams for topics, redacted and embedded once and cached under the temp dir.

The streams are public data (`shared/bench/threads-*.jsonl`); the cache holds
their redacted texts and vectors (as the pipeline computes them) so that the
topic benchmark can rerun in seconds. A cache is keyed by the stream, the model and
the redaction (code, policy, bundled lists), so a redaction change redacts again.
Nothing is written into the repository.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



def _bench_dir() -> Path:
    """`shared/bench` beside the repository (or beside a parent of it: worktrees)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "shared" / "bench").is_dir():
            return parent / "shared" / "bench"
    return here.parents[2] / "shared" / "bench"


BENCH = _bench_dir()
STREAMS = {"dev": BENCH / "threads-dev.jsonl", "wide": BENCH / "threads-wide.jsonl"}
# Sources whose gold topic names a subject (what the prompts are about).
SUBJECT_SOURCES = {"dev": ("cqr-kvret", "trec-cast-2019", "trec-cast-2020"),
                   "wide": ("star", "multidogo", "m2m")}
CACHE = Path(tempfile.gettempdir()) / "semtrace-bench-topics"


@dataclass
class Stream:
    """One bench stream with the pipeline's redacted text and vector per prompt."""

    name: str
    rows: list[dict[str, Any]]
    texts: list[str]
    vectors: np.ndarray


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _redaction_digest() -> str:
    """What the cached texts depend on besides the stream: the redaction code, its policy
    and bundled name and place lists, and the parsing of a line (a cache made before a
    redaction change is not reused)."""
    from appliance.config.paths import model_dir

    root = Path(__file__).resolve().parent.parent
    files = sorted((root / "appliance" / "redact").glob("*.py"))
    files += [root / "appliance" / "ingest.py", root / "policies" / "redaction.toml"]
    files += sorted(model_dir().glob("*.json.gz"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def load_stream(name: str, *, progress: bool = True) -> Stream:
    """The stream `name` ("dev" or "wide"), embedding it on first use."""
    from appliance.config import load_policies
    from appliance.embed import LlamaEmbedder, load_manifest

    path = STREAMS[name]
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    model = load_manifest().model_id.replace("@", "-")
    cache = CACHE / f"{name}-{_digest(path)}-{model}-{_redaction_digest()}.npz"
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        return Stream(name, rows, [str(t) for t in data["texts"]], data["vectors"])
    from appliance.ingest import parse_line
    from appliance.redact import Redactor

    pol = load_policies()
    CACHE.mkdir(mode=0o700, exist_ok=True)
    redactor = Redactor(pol.redaction, cache_dir=CACHE / "presidio")
    embedder = LlamaEmbedder(pol.correlation.embedding)
    t0 = time.perf_counter()
    texts: list[str] = []
    for i, r in enumerate(rows):
        prompt = parse_line(json.dumps(r), max_text_chars=32768, default_request_id=f"l{i}",
                            default_tenant="d")
        texts.append(redactor.redact(prompt).text)
        if progress and i % 1000 == 999:
            print(f"  {name}: redacted {i + 1}/{len(rows)}", file=sys.stderr)
    vecs = []
    for s in range(0, len(texts), 64):
        vecs.append(embedder.embed(texts[s:s + 64])[0])
        if progress and s % 1024 == 0:
            print(f"  {name}: embedded {s}/{len(texts)}", file=sys.stderr)
    vectors = np.vstack(vecs).astype(np.float32)
    np.savez(cache, texts=np.array(texts), vectors=vectors)
    if progress:
        print(f"  {name}: {len(rows)} prompts in {time.perf_counter() - t0:.0f} s, cached",
              file=sys.stderr)
    return Stream(name, rows, texts, vectors)
