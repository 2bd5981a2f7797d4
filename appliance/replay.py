"""Replay a JSON-lines stream through the pipeline, in batches, with per-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import IO

from appliance.errors import InputError
from appliance.ingest import parse_line
from appliance.pipeline import Pipeline
from appliance.records import Erased, Outcome, Prompt, Unredactable
from appliance.staging import EmbeddingThread, overlapped


@dataclass
class ReplayReport:
    """Counts and skipped lines of one replay."""

    lines: int = 0
    ingested: int = 0
    duplicates: int = 0
    erased: int = 0  # prompts of users erased after them: not stored
    unredactable: int = 0  # prompts whose redaction did not finish: not stored
    skipped: list[tuple[int, str]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)  # thread ids of the prompts ingested


def legacy_tag(digest: bytes) -> str:
    """The tag builds before 2026-12-05 gave: the plain digest's first 12 hex digits,
    which confirm a guessed file to anyone who reads the stored request ids."""
    return digest.hex()[:12]


def source_tag(digest: bytes, keyed: Callable[[bytes], str], *,
               replayed_before: Callable[[str], bool]) -> str:
    """The tag of a file in default request ids (`line-<tag>-N`): a second file's line N is
    not taken for a duplicate of the first's, while replaying the same file again stays
    idempotent. Keyed (`keyed`, the store's pseudonym key), so the stored ids say nothing
    of the file to someone without the key; a file an earlier build replayed into this
    store (its request ids carry `legacy_tag`) keeps that tag, so it is not stored twice."""
    old = legacy_tag(digest)
    return old if replayed_before(f"line-{old}-") else keyed(digest)


def read_prompts(lines: Iterable[str | bytes], *, max_text_chars: int, strict: bool,
                 report: ReplayReport, tag: str | None = None) -> Iterator[Prompt]:
    """Valid prompts of a stream; bad lines are recorded (or raise with --strict).

    Args:
        tag: names the source in default request ids (`line-<tag>-N`); see `source_tag`.
    """
    prefix = f"line-{tag}-" if tag else "line-"
    for lineno, line in enumerate(lines, start=1):
        report.lines += 1
        if not line.strip():
            continue
        try:
            if isinstance(line, bytes):  # decoded line by line: one bad line is one skip
                try:
                    line = line.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputError("The line is not valid UTF-8.") from None
            # An over-long prompt is cut as the service cuts it (`ingest.cut_text`), not
            # skipped: a skipped turn leaves a gap in its conversation.
            yield parse_line(line, max_text_chars=max_text_chars, truncate=True,
                             default_request_id=f"{prefix}{lineno}", default_tenant="default")
        except InputError as exc:
            if strict:
                raise InputError(f"Line {lineno}: {exc}") from None
            report.skipped.append((lineno, str(exc)))


def output_line(o: Outcome, parent_index: int | None) -> str:
    """The replay output format (one JSON object per input prompt)."""
    return json.dumps({"index": o.index, "request_id": o.request_id, "thread_id": o.thread_id,
                       "parent_index": parent_index, "position": o.position,
                       "similarity": None if o.similarity is None else round(o.similarity, 4),
                       "intent": o.intent, "topic_id": o.topic_id,
                       "link_source": o.link_source, "truncated": o.text_truncated})


def batched(prompts: Iterable[Prompt], size: int) -> Iterator[list[Prompt]]:
    """`prompts` in lists of `size` (the last one shorter)."""
    pending: list[Prompt] = []
    for p in prompts:
        pending.append(p)
        if len(pending) >= size:
            yield pending
            pending = []
    if pending:
        yield pending


def replay(pipeline: Pipeline, prompts: Iterable[Prompt], out: IO[str], *, batch: int = 64,
           report: ReplayReport, progress: Callable[[int], None] | None = None,
           final_topics: bool = True) -> ReplayReport:
    """Ingest `prompts` in batches and write one output line per prompt.

    With `final_topics` the lines are written at the end, each with its
    thread's topic after a last refinement (what the topics screens show);
    otherwise as they are ingested, with the topic handed out at ingest.
    """
    index_of: dict[int, int | None] = {}
    held: list[tuple[Prompt, Outcome, int | None]] = []

    def write(pending: Sequence[Prompt], outcomes: list[Outcome | Erased | Unredactable],
              ) -> None:
        for p, o in zip(pending, outcomes, strict=True):
            if isinstance(o, Erased):  # its user was erased after it was sent
                out.write(json.dumps({"index": o.index, "request_id": o.request_id,
                                      "erased": True}) + "\n")
                report.erased += 1
                continue
            if isinstance(o, Unredactable):  # its redaction did not finish: not stored
                out.write(json.dumps({"index": o.prompt.index, "request_id": o.prompt.request_id,
                                      "unredactable": True}) + "\n")
                report.unredactable += 1
                continue
            index_of.setdefault(o.record_id, o.index)
            parent = index_of.get(o.parent_id) if o.parent_id is not None else None
            if final_topics:
                held.append((p, o, parent))
            else:
                out.write(output_line(o, parent) + "\n")
            report.ingested += 0 if o.duplicate else 1
            if not o.duplicate:
                report.threads.add(o.thread_id)
            report.duplicates += 1 if o.duplicate else 0
        if progress:
            progress(len(pending))

    # each batch's embedding runs on its own thread while the one before is linked
    with EmbeddingThread() as ahead:
        for pending, outcomes in overlapped(lambda b: pipeline.stage(b, ahead=ahead),
                                            pipeline.finish, batched(prompts, batch)):
            write(pending, outcomes)
    topics = pipeline.topics
    if held and topics is not None and hasattr(topics, "refine"):
        for tenant in sorted({p.tenant for p, _, _ in held}):
            topics.refine(tenant)
    for p, o, parent in held:
        if topics is not None and hasattr(topics, "thread_topic") and not p.synthetic:
            o = replace(o, topic_id=topics.thread_topic(p.tenant, o.thread_id) or o.topic_id)
        out.write(output_line(o, parent) + "\n")
    return report
