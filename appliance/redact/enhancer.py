"""Presidio's context step (the words before each hit that raise its score), in linear time.

Presidio's `LemmaContextAwareEnhancer` finds each hit's token by scanning the tokens from the
first one, then walks back from it to collect the nearest context words, testing each lemma
against the text's keyword *list* (`in` on a list: a scan of every keyword). One analysis
cost hits x tokens x keywords: on a 32,768-character prompt dense with phones, e-mails,
cards and IBANs it took minutes, and no pattern time limit covers it.

`LinearContextEnhancer` gives the same surrounding words, so the same scores and spans,
from an index built once per text: the tokens' end offsets (a bisection finds a hit's
token) and the positions of the tokens whose lemma is a keyword (a bisection finds the
nearest ones). Where the index's assumptions do not hold (tokens out of order, an empty
token, no token at the hit) Presidio's own code runs.

With `whole_words` a context word counts only when a surrounding word, or a run of its letters
and digits, is that word (Presidio 2.2.366's `context_matching_mode="whole_word"`, which
2.2.360 lacks, splits nothing: "ssn#536228467" would not count), not when it is part of one:
Presidio's default takes the IP recogniser's "ip" in "script" or "description" as context, and
raises a bare "::" in code (`lst[::-1]`) to an IP address.

Words in `near_only` (the redactor's: "social" and "security", Presidio's SSN context words
that are also everyday modifiers) count only as the nearest word before the hit (or in its
token: "My social is 536228467"), or right next to another of the recogniser's context words
("social security number ..."), not anywhere in the window: "social media post 123456789" and
"security ticket 987654321" describe another thing. Presidio has no phrase context. Where
Presidio's own code gathers the words (above), they count anywhere in the window, as before.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

from appliance.redact.budget import check

WORD_PARTS = re.compile(r"[^\W_]+")


def forms_of(word: str) -> frozenset[str]:
    """The lower-cased `word` and the runs of letters and digits in it."""
    low = word.lower()
    return frozenset([low, *WORD_PARTS.findall(low)])


def word_forms(surrounding: list[str]) -> set[str]:
    """The lower-cased `surrounding` words and the runs of letters and digits in each."""
    return set().union(*(forms_of(w) for w in surrounding))


def whole_word_match(surrounding: list[str] | None, context_words: list[str] | None,
                     forms: Callable[[str], frozenset[str]] = forms_of) -> str:
    """The first of `context_words` that is one of the `surrounding` words or a run of letters
    and digits in one ("ssn" in "ssn#536228467" or "ssn="; not "ip" in "script"), or "".
    `forms`: `forms_of`, or its memo for one text (each word's forms looked up, never
    joined: a hit inside one long token, an IP in a pasted list, took all its parts)."""
    if surrounding is None or context_words is None:
        return ""
    each = [forms(w) for w in surrounding]
    return next((w for w in context_words if any(w.lower() in f for f in each)), "")


@dataclass(frozen=True)
class ContextIndex:
    """One text's tokens, as the context step looks them up."""

    ends: tuple[int, ...] | None  # each token's end offset; None: not in order, or empty
    keyword_at: tuple[int, ...]  # token positions whose lower-cased lemma is a keyword
    lemma_count: int

    @classmethod
    def of(cls, artifacts: Any) -> ContextIndex:
        starts = list(artifacts.tokens_indices)
        ends = [s + len(t) for s, t in zip(starts, artifacts.tokens, strict=False)]
        ordered = (len(ends) == len(starts) == len(artifacts.tokens)
                   and all(e > s for s, e in zip(starts, ends, strict=True))
                   and all(a <= b for a, b in zip(ends, ends[1:], strict=False)))
        keywords = set(artifacts.keywords)
        lemmas = artifacts.lemmas
        return cls(tuple(ends) if ordered else None,
                   tuple(i for i, lemma in enumerate(lemmas) if lemma.lower() in keywords),
                   len(lemmas))

    def token_at(self, start: int) -> int | None:
        """The first token that starts at `start` or runs past it (Presidio's rule); None
        when the index cannot say."""
        if self.ends is None:
            return None
        i = bisect_right(self.ends, start)
        return i if i < len(self.ends) else None

    def backward(self, index: int, count: int) -> list[int]:
        """The `count` nearest keyword positions at or before `index`, nearest first."""
        if count <= 0 or not 0 <= index < self.lemma_count:
            return []
        j = bisect_right(self.keyword_at, index)
        return list(reversed(self.keyword_at[max(0, j - count):j]))

    def forward(self, index: int, count: int) -> list[int]:
        """The `count` nearest keyword positions at or after `index`, nearest first."""
        if count <= 0 or not 0 <= index < self.lemma_count:
            return []
        j = bisect_left(self.keyword_at, index)
        return list(self.keyword_at[j:j + count])

    def neighbours(self, position: int) -> list[int]:
        """The keyword positions right before and right after the keyword at `position`."""
        j = bisect_left(self.keyword_at, position)
        return [self.keyword_at[k] for k in (j - 1, j + 1) if 0 <= k < len(self.keyword_at)]


class LinearContextEnhancer(LemmaContextAwareEnhancer):
    """Presidio's lemma context enhancer, same parameters and results, with the surrounding
    words of each hit looked up in a `ContextIndex` built once per text."""

    def __init__(self, *args: Any, whole_words: bool = False,
                 near_only: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.whole_words = whole_words
        self.near_only = frozenset(w.lower() for w in near_only) if whole_words else frozenset()
        self._local = threading.local()

    # An instance method where Presidio's is static: its 2.2.360 passes no matching mode.
    def _find_supportive_word_in_context(  # type: ignore[override]
            self, context_list: Any, recognizer_context_list: Any, *mode: Any) -> str:
        """The first of the recogniser's context words found among the surrounding words,
        or "" (Presidio's substring rule unless `whole_words`)."""
        if not self.whole_words:
            return str(super()._find_supportive_word_in_context(
                context_list, recognizer_context_list, *mode))
        hit = getattr(self._local, "hit", None)
        self._local.hit = None
        forms = self._forms
        if (hit is None or not context_list or not recognizer_context_list
                or all(self.near_only.isdisjoint(forms(w)) for w in context_list)):
            return whole_word_match(context_list, recognizer_context_list, forms)
        return whole_word_match(self._placed_words(hit, context_list, recognizer_context_list),
                                recognizer_context_list, forms)

    def _forms(self, word: str) -> frozenset[str]:
        """`forms_of(word)`, memoised for the text being enhanced (dropped after it: no word
        of a prompt outlives its analysis). Once per hit, a word's forms cost its length:
        4,000 IP addresses in one 32,000-character token (a pasted comma-separated list)
        took 16,000 parts each, past the prompt's budget."""
        memo: dict[str, frozenset[str]] | None = getattr(self._local, "forms", None)
        if memo is None:
            return forms_of(word)
        found = memo.get(word)
        if found is None:
            found = memo[word] = forms_of(word)
        return found

    def _placed_words(self, hit: tuple[ContextIndex, list[str], int, list[int]],
                      context_list: list[str], recognizer_context: list[str]) -> list[str]:
        """The surrounding words less the `near_only` ones that stand neither right before
        the hit (or in it) nor next to another of the recogniser's context words."""
        index, lemmas, token, positions = hit
        context = {w.lower() for w in recognizer_context}
        nearest = index.backward(token - 1, 1) if token > 0 else []
        placed = {lemmas[i].lower() for i in positions}
        words = [w for w in context_list if w.lower() not in placed]  # outside context words
        for position in positions:
            lemma = lemmas[position].lower()
            if (position >= token or position in nearest
                    or any(word_forms([lemmas[n]]) & context for n in index.neighbours(position))
                    or not word_forms([lemma]) & self.near_only):
                words.append(lemma)
            else:
                words.extend(word_forms([lemma]) - self.near_only - {lemma})
        return words

    def enhance_using_context(self, text: str, raw_results: Any, nlp_artifacts: Any,
                              recognizers: Any, context: Any = None) -> Any:
        index = None
        if nlp_artifacts is not None and nlp_artifacts.tokens:
            index = (nlp_artifacts, ContextIndex.of(nlp_artifacts))
        self._local.index = index
        self._local.forms = {}
        try:
            return super().enhance_using_context(text, raw_results, nlp_artifacts,
                                                 recognizers, context)
        finally:
            self._local.index = self._local.forms = None

    def _extract_surrounding_words(self, nlp_artifacts: Any, word: str,
                                   start: int) -> list[str]:
        check("Presidio's context step")  # once per hit: the step draws on the prompt's budget
        self._local.hit = None
        current = getattr(self._local, "index", None)
        if current is None or current[0] is not nlp_artifacts:
            return list(super()._extract_surrounding_words(nlp_artifacts, word, start))
        index: ContextIndex = current[1]
        token = index.token_at(start)
        if token is None:
            return list(super()._extract_surrounding_words(nlp_artifacts, word, start))
        lemmas = nlp_artifacts.lemmas
        # Presidio collects one word more than asked (the hit's own token may be one).
        positions = (index.backward(token, self.context_prefix_count + 1)
                     + index.forward(token, self.context_suffix_count + 1))
        # Where each word stands, for `near_only` (Presidio asks for the match next).
        self._local.hit = (index, lemmas, token, positions)
        return list(set([lemmas[i].lower() for i in positions]))
