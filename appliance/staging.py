"""A batch staged for linking: redacted, its embedding running on a thread of its own.

The service's worker (and replay) link, store and index one batch while the next one's
embedding runs beside it: llama.cpp releases the GIL while it computes, so the two use
both cores where one after the other used one. Linking stays on the worker, batch after
batch in order, so a batch's linking sees every turn of the batches before it; only the
embedding, a pure function of the redacted texts, runs ahead. The one `Llama` object is
used by the embedding thread alone while it embeds (`LlamaEmbedder` holds a lock around
each call, so a search's embedding on another thread waits for it).

Within a batch, too: a batch staged with the embedding thread is redacted `STAGE_CHUNK`
prompts at a time, each part's texts handed to the embedding thread before the next part
is redacted, and the worker links each prompt as soon as its vector is made. The packs
the model decodes are those of the whole batch at once (`embed.Packing`), so the vectors,
and all that is decided from them, are the same as one call's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from appliance.embed import Embedder
from appliance.records import Erased, Outcome, Prompt, Redacted, Unredactable

StageTimer = Callable[[str, int, int], None]  # (stage, start ns, end ns), wall clock
StageTimes = list[tuple[str, int, int]]  # (stage, start ns, end ns), in the order they ran
Part = tuple[np.ndarray, list[bool]]  # vectors, a truncation flag each

# Prompts redacted before their texts go to the embedding thread: the first part's
# embedding starts after 16 prompts' redaction, not a whole batch's. spaCy's network costs
# a little more in smaller packs (redaction of the dev stream 1.52 ms a prompt in parts of
# 16, 1.35-1.38 in 32, 1.30-1.47 in 64, 1.78-1.82 in 8; the same redactions). Parts of 32
# (bench/load.py, 2 runs each alternated, load 9-11): the service's CPU 8.19-8.35 ms a
# prompt against 8.61-8.75, its busiest thread the same (4.4-4.5 ms); 16 is kept for a
# batch of 17-32 prompts, embedded beside its redaction only in parts of 16.
STAGE_CHUNK = 16


class StageClock:
    """Reports consecutive stage intervals to an optional timer; nearly free without one."""

    def __init__(self, timer: StageTimer | None) -> None:
        self._timer = timer
        self._last = time.time_ns() if timer else 0

    def __call__(self, stage: str) -> None:
        if self._timer is not None:
            now = time.time_ns()
            self._timer(stage, self._last, now)
            self._last = now


class Vectors:
    """A staged batch's vectors, in the order of its embedded texts, from the parts the
    embedding thread makes of them in turn: `row` waits for the part that holds its row,
    not for the whole batch. Read from one thread (the worker)."""

    def __init__(self, parts: Sequence[Future[Part]]) -> None:
        self._parts = list(parts)
        self._got: list[Part] = []
        self._ready = 0  # rows in self._got

    def row(self, n: int) -> tuple[np.ndarray, bool]:
        """The vector of the `n`th embedded text, and whether it was truncated."""
        while self._ready <= n:
            if len(self._got) == len(self._parts):
                raise IndexError(f"row {n} of {self._ready}")
            part = self._parts[len(self._got)].result()
            self._got.append(part)
            self._ready += len(part[1])
        for vectors, cut in self._got:
            if n < len(cut):
                return vectors[n], cut[n]
            n -= len(cut)
        raise AssertionError("unreachable")

    def settle(self) -> None:
        """Wait until the thread is done with every part (needed or not: their times are
        reported with the batch's)."""
        wait(self._parts)


@dataclass(frozen=True)
class Staged:
    """A batch as `Pipeline.stage` left it for `Pipeline.finish`.

    Attributes:
        prompts: the batch as it came.
        redacted: by position in `prompts`, the redaction of each prompt that was to be
            stored when it was staged (the first of a request id, not stored already, its
            user not erased); `finish` checks that again.
        embedded: positions in `prompts` whose redacted text `vectors` embeds, in order.
        vectors: the embedding of those texts, row by row as it is made.
        times: the stages' wall-clock intervals so far, reported when the batch is done.
    """

    prompts: tuple[Prompt, ...]
    redacted: dict[int, Redacted | Unredactable]
    embedded: tuple[int, ...]
    vectors: Vectors
    times: StageTimes = field(default_factory=list)


def collect(times: StageTimes) -> StageTimer:
    """A stage timer that keeps the intervals in `times` (reported when a batch is done)."""
    return lambda *interval: times.append(interval)


STAGES = ("redaction", "embedding", "linking", "commit", "index")


def merged(times: StageTimes) -> StageTimes:
    """One interval a stage, from its first part's start to its last part's end (a batch
    staged in parts redacts and embeds several), in the pipeline's order of `STAGES`
    (the embedding thread's intervals come when it runs)."""
    spans: dict[str, tuple[int, int]] = {}
    for stage, start, end in times:
        first, last = spans.get(stage, (start, end))
        spans[stage] = (min(first, start), max(last, end))
    order = sorted(spans, key=lambda s: STAGES.index(s) if s in STAGES else len(STAGES))
    return [(stage, *spans[stage]) for stage in order]


class _Packing(Protocol):
    def add(self, texts: list[str]) -> Part: ...

    def end(self) -> Part: ...


class _WholeList:
    """The packing of an embedder that makes none (fakes): every text embedded at `end`."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._texts: list[str] = []

    def add(self, texts: list[str]) -> Part:
        self._texts += texts
        return np.zeros((0, self._embedder.dims), dtype=np.float32), []

    def end(self) -> Part:
        return self._embedder.embed(self._texts)


class EmbeddingStream:
    """One batch's texts, given a part at a time, embedded on the embedding thread in
    the order they were given."""

    def __init__(self, pool: ThreadPoolExecutor, embedder: Embedder,
                 clock: Callable[[], Callable[[str], None]] | None) -> None:
        packing = getattr(embedder, "packing", None)
        self._packing: _Packing = packing() if packing is not None else _WholeList(embedder)
        self._pool = pool
        self._clock = clock
        self._parts: list[Future[Part]] = []

    def add(self, texts: list[str]) -> None:
        """Hand a part's texts to the thread (returns at once)."""
        self._parts.append(self._pool.submit(self._run, lambda: self._packing.add(texts)))

    def end(self) -> Vectors:
        """The batch's vectors, as the thread makes them."""
        self._parts.append(self._pool.submit(self._run, self._packing.end))
        return Vectors(self._parts)

    def _run(self, step: Callable[[], Part]) -> Part:
        clock = self._clock() if self._clock is not None else None  # the thread's CPU time
        part = step()
        if clock is not None:
            clock("embedding")
        return part


class EmbeddingThread:
    """One thread that embeds staged batches in the order they were staged."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semtrace-embed")

    def stream(self, embedder: Embedder,
               clock: Callable[[], Callable[[str], None]] | None = None) -> EmbeddingStream:
        """A batch's embedding on the thread; `clock` makes the stage clock there (its CPU
        time is the thread's)."""
        return EmbeddingStream(self._pool, embedder, clock)

    def close(self) -> None:
        """Finish the embedding under way and stop the thread."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> EmbeddingThread:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def embedded_now(embedder: Embedder, texts: list[str],
                 clock: Callable[[str], None] | None) -> Vectors:
    """The embedding of `texts` done on this thread."""
    done: Future[Part] = Future()
    done.set_result(embedder.embed(texts))
    if clock is not None:
        clock("embedding")
    return Vectors([done])


Redact = Callable[[Sequence[Prompt]], Sequence[Redacted | Unredactable]]


def redact_and_embed(redact: Redact, embedder: Embedder, prompts: Sequence[Prompt],
                     ahead: EmbeddingThread | None, clock: Callable[[str], None],
                     thread_clock: Callable[[], Callable[[str], None]] | None,
                     ) -> tuple[dict[int, Redacted | Unredactable], Vectors]:
    """Each prompt's redaction, by position, and the vectors of the redacted ones, in
    order. Without `ahead` all of it on this thread; with it, the prompts are redacted
    `STAGE_CHUNK` at a time, each part's texts handed to its thread before the next part
    is redacted."""
    if ahead is None:
        redacted = dict(enumerate(redact(prompts)))
        clock("redaction")
        return redacted, embedded_now(embedder, _texts(redacted.values()), clock)
    stream = ahead.stream(embedder, thread_clock)
    redacted = {}
    for start in range(0, max(len(prompts), 1), STAGE_CHUNK):  # (none: timed all the same)
        part = redact(prompts[start:start + STAGE_CHUNK])
        clock("redaction")
        redacted.update(enumerate(part, start))
        stream.add(_texts(part))
    return redacted, stream.end()


def _texts(redacted: Iterable[Redacted | Unredactable]) -> list[str]:
    return [r.text for r in redacted if isinstance(r, Redacted)]


def overlapped(stage: Callable[[Sequence[Prompt]], Staged],
               finish: Callable[[Staged], list[Outcome | Erased | Unredactable]],
               batches: Iterable[Sequence[Prompt]],
               ) -> Iterator[tuple[Sequence[Prompt], list[Outcome | Erased | Unredactable]]]:
    """(batch, outcomes) for each batch, in order: each batch is staged (its embedding
    started) before the one before it is finished."""
    held: tuple[Sequence[Prompt], Staged] | None = None
    following = iter(batches)
    while True:
        try:
            batch = next(following)
            staged = stage(batch)
        except StopIteration:
            break
        except BaseException:  # a bad line (replay --strict), or this batch failed to
            if held is not None:  # stage: what came before it is kept all the same
                yield held[0], finish(held[1])
            raise
        if held is not None:
            yield held[0], finish(held[1])
        held = (batch, staged)
    if held is not None:
        yield held[0], finish(held[1])
