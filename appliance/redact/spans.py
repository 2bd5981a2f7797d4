"""The base of the rule recognisers: the spans a rule finds, as Presidio results.

Each rule scores its own context, so its results are marked exempt from
Presidio's lemma-based context enhancement. Imported only after
`redact.offline_environment` has run (Presidio pulls in tldextract).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from presidio_analyzer import EntityRecognizer, RecognizerResult


def word_set(text: str) -> frozenset[str]:
    """A set of words from a space-separated string."""
    return frozenset(text.split())


def make_result(
    rec: EntityRecognizer, entity: str, start: int, end: int, score: float
) -> RecognizerResult:
    """A result tagged with its recogniser and exempt from context enhancement."""
    return RecognizerResult(
        entity,
        start,
        end,
        score,
        recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: str(getattr(rec, "name", "")),
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: rec.id,
            RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True,
        },
    )


def has_context(
    text: str, start: int, end: int, words: re.Pattern[str], *, before: int = 40, after: int = 15
) -> bool:
    """Whether a context word occurs shortly before or after `text[start:end]`."""
    return bool(
        words.search(text, max(0, start - before), start)
        or words.search(text, end, min(len(text), end + after))
    )


class SpanRecognizer(EntityRecognizer):
    """No model to load; subclasses implement `spans(text, artifacts)`."""

    ENTITY = ""

    def __init__(self, entities: list[str] | None = None) -> None:
        super().__init__(
            supported_entities=entities or [self.ENTITY],
            name=f"semtrace_{type(self).__name__}",
            supported_language="en",
        )

    def load(self) -> None:
        """Nothing to load."""

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        raise NotImplementedError

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None
    ) -> list[RecognizerResult]:
        """Presidio entry point."""
        return [
            make_result(self, self.ENTITY, s, e, score)
            for s, e, score in self.spans(text, nlp_artifacts)
        ]
