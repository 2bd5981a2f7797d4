"""The base of the rule recognisers: the spans a rule finds, as Presidio results.

Each rule scores its own context, so its results are marked exempt from
Presidio's lemma-based context enhancement. Imported only after
`redact.offline_environment` has run (Presidio pulls in tldextract).

Every rule runs under the prompt's time budget (budget.py): its expressions are `timed`,
and the budget is checked before it starts and after each span it finds, so neither an
expression nor a loop goes on past it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from presidio_analyzer import EntityRecognizer, RecognizerResult

from appliance.redact.budget import TimedPattern, check, stage, timed


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


_WORD_END = timed(r"\w")
_WORD_REST = timed(r"\w*")


def has_context(
    text: str, start: int, end: int, words: TimedPattern, *, before: int = 40, after: int = 15
) -> bool:
    """Whether a context word occurs shortly before or after `text[start:end]`.

    The window after the hit runs on to the end of the word it would cut: a search stopped
    inside "not" sees "no" as a whole word (a word boundary matches at `endpos`).
    """
    stop = min(len(text), end + after)
    if stop > end and _WORD_END.match(text, stop - 1):
        stop = _WORD_REST.match(text, stop).end()
    return bool(
        words.search(text, max(0, start - before), start)
        or words.search(text, end, stop)
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
        """Presidio entry point, under the prompt's time budget."""
        results = []
        with stage(str(getattr(self, "name", ""))):
            check("the recogniser")
            for s, e, score in self.spans(text, nlp_artifacts):
                results.append(make_result(self, self.ENTITY, s, e, score))
                check("the recogniser")
        return results
