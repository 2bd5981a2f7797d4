"""Embedding of redacted text: the bundled GGUF model through llama.cpp.

`Embedder` is the protocol the pipeline uses. `LlamaEmbedder` is the real one;
`HashEmbedder` is a deterministic fake for unit tests of pure logic only.
"""

from __future__ import annotations

import hashlib
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from appliance.checksum import file_digest
from appliance.config import EmbeddingSettings, model_dir
from appliance.errors import ModelError

DIMS = 384


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors. The service calls `embed` from
    more than one thread (its embedding, worker and reader threads): an embedder that
    may not run on two at once serialises its calls (LlamaEmbedder's lock)."""

    model_id: str
    dims: int

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        """Embed texts; returns (n, dims) float32 and a truncation flag per text."""
        ...


@dataclass(frozen=True)
class ModelManifest:
    """What `models/MODEL.toml` says about the bundled model."""

    name: str
    path: Path
    sha256: str
    dims: int
    max_tokens: int

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.sha256[:12]}"


def load_manifest(directory: Path | None = None) -> ModelManifest:
    """Read the model manifest; ModelError when it is missing or malformed."""
    directory = directory or model_dir()
    path = directory / "MODEL.toml"
    try:
        meta = tomllib.loads(path.read_text())["model"]
        return ModelManifest(name=meta["name"], path=directory / meta["file"],
                             sha256=meta["sha256"], dims=int(meta["dims"]),
                             max_tokens=int(meta["max_tokens"]))
    except FileNotFoundError:
        raise ModelError(f"The model manifest {path} is missing.") from None
    except (KeyError, ValueError, tomllib.TOMLDecodeError):
        raise ModelError(f"The model manifest {path} is malformed.") from None


def verify_model(manifest: ModelManifest) -> None:
    """Check the model file against its manifest checksum; ModelError if it differs."""
    if not manifest.path.is_file():
        raise ModelError(f"The embedding model {manifest.path} is missing.")
    if file_digest(manifest.path).hex() != manifest.sha256:
        raise ModelError(
            f"The embedding model {manifest.path} does not match its checksum; "
            "reinstall it from the bundle."
        )


def read_bundled_list(path: Path) -> Any:
    """The JSON of a bundled gzip list (the name or the city list), checked against the
    sha256 MODEL.toml gives for its file name (a list built locally for another setting
    has none); ModelError naming the file when it is altered or unreadable."""
    import gzip
    import json
    import zlib

    try:
        sections = tomllib.loads((path.parent / "MODEL.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        sections = {}
    expected = next((str(v.get("sha256")) for v in sections.values()
                     if isinstance(v, dict) and v.get("file") == path.name), None)
    try:
        raw = path.read_bytes()
        if expected is not None and hashlib.sha256(raw).hexdigest() != expected:
            raise ModelError(f"The bundled list {path} does not match its checksum; "
                             "reinstall it from the bundle.")
        return json.loads(gzip.decompress(raw).decode("utf-8"))
    except (OSError, EOFError, ValueError, zlib.error):
        raise ModelError(f"The bundled list {path} is damaged; reinstall it from the "
                         "bundle.") from None


def _normalise(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (m / norms).astype(np.float32)


class LlamaEmbedder:
    """all-MiniLM-L6-v2 (q8_0 GGUF) with mean pooling, via llama-cpp-python.

    One `Llama` is used by one thread at a time (a lock serialises calls):
    concurrent use of one context crashes llama.cpp.
    """

    def __init__(self, settings: EmbeddingSettings | None = None, *,
                 manifest: ModelManifest | None = None) -> None:
        settings = settings or EmbeddingSettings()
        manifest = manifest or load_manifest()
        verify_model(manifest)
        import llama_cpp

        self.dims = manifest.dims
        self.model_id = manifest.model_id
        self.max_tokens = min(settings.max_tokens, manifest.max_tokens)
        self._pack = settings.pack_tokens
        self._lock = threading.Lock()
        with self._lock:
            self._llm = llama_cpp.Llama(
                model_path=str(manifest.path), embedding=True, n_ctx=max(512, self.max_tokens),
                n_batch=max(settings.n_batch, self.max_tokens),
                n_ubatch=max(settings.n_batch, self.max_tokens),
                n_threads=settings.threads, n_threads_batch=settings.threads,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, verbose=False,
            )
        self._llama_cpp = llama_cpp
        self._n_seq_max = int(self._llm.context_params.n_seq_max)

    def tokens(self, text: str) -> tuple[list[int], bool]:
        """Tokenise with [CLS]/[SEP]; truncate to max_tokens keeping the final [SEP]."""
        toks = self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(toks) <= self.max_tokens:
            return toks, False
        return toks[: self.max_tokens - 1] + [toks[-1]], True

    def _decode(self, seqs: list[list[int]]) -> np.ndarray:
        llm, lc = self._llm, self._llama_cpp
        llm._ctx.kv_cache_clear()
        llm._batch.reset()
        for i, toks in enumerate(seqs):
            llm._batch.add_sequence(toks, i, True)
        llm._ctx.decode(llm._batch)
        out = np.empty((len(seqs), self.dims), dtype=np.float32)
        for i in range(len(seqs)):
            ptr = lc.llama_get_embeddings_seq(llm._ctx.ctx, i)
            out[i] = np.ctypeslib.as_array(ptr, shape=(self.dims,))
        llm._batch.reset()
        return out

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        """Embed texts in packs of about `pack_tokens` tokens; L2-normalised."""
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32), []
        with self._lock:
            packing = Packing(self)
            done, cut = packing.fill(texts)
            last, last_cut = packing.close()
        return np.vstack([done, last]), cut + last_cut

    def packing(self) -> Packing:
        """`embed` of a list of texts given a part at a time (see `Packing`)."""
        return Packing(self, self._lock)


class Packing:
    """`LlamaEmbedder.embed` of a list of texts given a part at a time, with the same
    vectors: a text's vector depends on the others decoded in its pack (cosine down to
    0.9992 between packings of the dev stream), so the packs are the ones `embed` makes of
    the whole list, each decoded once the texts after it show it is full, the last one by
    `close`. Used from one thread at a time, parts in order; with `lock`, each call holds
    the model's lock (a search's embedding may come between two calls: a pack is decoded
    whole, from an empty cache)."""

    def __init__(self, embedder: LlamaEmbedder, lock: threading.Lock | None = None) -> None:
        self._e = embedder
        self._lock = lock
        self._pack: list[list[int]] = []
        self._cut: list[bool] = []
        self._size = 0

    def add(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        """The vectors of the packs completed so far (of earlier parts' texts too), not
        returned before, and their truncation flags."""
        if self._lock is None:
            return self.fill(texts)
        with self._lock:
            return self.fill(texts)

    def end(self) -> tuple[np.ndarray, list[bool]]:
        """The vectors of the last pack (the texts `add` has not returned yet)."""
        if self._lock is None:
            return self.close()
        with self._lock:
            return self.close()

    def fill(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        """`add`, the model's lock held by the caller."""
        rows: list[np.ndarray] = []
        cut: list[bool] = []
        e = self._e
        for toks, truncated in (e.tokens(t) for t in texts):
            if self._pack and (self._size + len(toks) > e._pack
                               or len(self._pack) >= e._n_seq_max):
                rows.append(e._decode(self._pack))
                cut += self._cut
                self._pack, self._cut, self._size = [], [], 0
            self._pack.append(toks)
            self._cut.append(truncated)
            self._size += len(toks)
        return self._rows(rows), cut

    def close(self) -> tuple[np.ndarray, list[bool]]:
        """`end`, the model's lock held by the caller."""
        if not self._pack:
            return self._rows([]), []
        rows, cut = [self._e._decode(self._pack)], self._cut
        self._pack, self._cut, self._size = [], [], 0
        return self._rows(rows), cut

    def _rows(self, rows: list[np.ndarray]) -> np.ndarray:
        if not rows:
            return np.zeros((0, self._e.dims), dtype=np.float32)
        return _normalise(np.vstack(rows))


class HashEmbedder:
    """Deterministic bag-of-words fake for unit tests of pure logic. Not a model."""

    model_id = "hash-fake@0"

    def __init__(self, dims: int = DIMS) -> None:
        self.dims = dims

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
                out[i, h % self.dims] += 1.0 if (h >> 63) else -1.0
        return _normalise(out), [False] * len(texts)
