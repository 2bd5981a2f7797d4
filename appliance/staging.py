"""A batch staged for linking: redacted, its embedding running on a thread of its own.

The service's worker (and replay) link, store and index one batch while the next one's
embedding runs beside it: llama.cpp releases the GIL while it computes, so the two use
both cores where one after the other used one. Linking stays on the worker, batch after
batch in order, so a batch's linking sees every turn of the batches before it; only the
embedding, a pure function of the redacted texts, runs ahead. The one `Llama` object is
used by the embedding thread alone while it embeds (`LlamaEmbedder` holds a lock around
each call, so a search's embedding on another thread waits for it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.embed import Embedder
from appliance.records import Erased, Outcome, Prompt, Redacted, Unredactable

StageTimer = Callable[[str, int, int], None]  # (stage, start ns, end ns), wall clock
StageTimes = list[tuple[str, int, int]]  # (stage, start ns, end ns), in the order they ran


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


@dataclass(frozen=True)
class Staged:
    """A batch as `Pipeline.stage` left it for `Pipeline.finish`.

    Attributes:
        prompts: the batch as it came.
        redacted: by position in `prompts`, the redaction of each prompt that was to be
            stored when it was staged (the first of a request id, not stored already, its
            user not erased); `finish` checks that again.
        embedded: positions in `prompts` whose redacted text `vectors` embeds, in order.
        vectors: the embedding of those texts: (n, dims) vectors, a truncation flag each.
        times: the stages' wall-clock intervals so far, reported when the batch is done.
    """

    prompts: tuple[Prompt, ...]
    redacted: dict[int, Redacted | Unredactable]
    embedded: tuple[int, ...]
    vectors: Future[tuple[np.ndarray, list[bool]]]
    times: StageTimes = field(default_factory=list)


def collect(times: StageTimes) -> StageTimer:
    """A stage timer that keeps the intervals in `times` (reported when a batch is done)."""
    return lambda *interval: times.append(interval)


def _embed_now(embedder: Embedder, texts: list[str], clock: Callable[[str], None] | None,
               ) -> tuple[np.ndarray, list[bool]]:
    result = embedder.embed(texts)
    if clock is not None:
        clock("embedding")
    return result


class EmbeddingThread:
    """One thread that embeds staged batches in the order they were staged."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semtrace-embed")

    def submit(self, embedder: Embedder, texts: list[str],
               clock: Callable[[], Callable[[str], None]] | None = None,
               ) -> Future[tuple[np.ndarray, list[bool]]]:
        """Embed `texts` on the thread; `clock` makes the stage clock there (its CPU time
        is the thread's)."""
        return self._pool.submit(lambda: _embed_now(embedder, texts,
                                                    clock() if clock is not None else None))

    def close(self) -> None:
        """Finish the embedding under way and stop the thread."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> EmbeddingThread:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def embedded_now(embedder: Embedder, texts: list[str],
                 clock: Callable[[str], None] | None) -> Future[tuple[np.ndarray, list[bool]]]:
    """The embedding of `texts` done on this thread, as a finished future."""
    done: Future[tuple[np.ndarray, list[bool]]] = Future()
    done.set_result(_embed_now(embedder, texts, clock))
    return done


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
