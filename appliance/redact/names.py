"""People's names from the name lists, initials, cues and speaker labels (PERSON).

`PersonNameRecognizer` reads the word lists of `gazetteer.py`: runs of
capitalised words that the name lists know and that are not common words,
initials, cues ("my name is", "Dr."), speaker labels and lower-case texts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from appliance.redact.budget import timed
from appliance.redact.foreign import foreign_phrase
from appliance.redact.gazetteer import (
    CALENDAR,
    NAME_PARTICLES,
    SENTENCE_END,
    Gazetteer,
    split_chat_word,
)
from appliance.redact.recognizers import SpanRecognizer
from appliance.redact.spans import word_set

# Mid-sentence, a capitalised dictionary noun is a name if it is this popular as one.
NOUN_NAME_FIRST_RANK = 250
NOUN_NAME_LAST_RANK = 100
INITIAL = timed(r"[A-Z]\.?")
_NAME_WORD = r"[^\W\d_][\w'’\-]*"
NAME_WORDS = timed(rf"{_NAME_WORD}|[A-Z]\.")
# Cues after which a word is a name even when no list knows it, lower case allowed.
STRONG_CUE = timed(
    r"(?i)\b(?:my name is|my name's|name is|i am called|i'm called|call me|known as|"
    r"(?:maiden|first|last|middle|sur|full|given|family) ?name is|"
    r"(?:mr|mrs|ms|mx|dr|prof|miss|sir|madam|dame|mme|mlle|herr|frau|señora?|sra?)\.?)[ \t]+"
)
# Cues after which capitalised words that are not common words are a name.
WEAK_CUE = timed(
    r"(?i)(?:\b(?:named|called|dear|hi|hello|hey|thanks|thank you|regards|cheers|sincerely|"
    r"signed)[ \t]*,?|\bname[ \t]*:)[ \t]*\n?[ \t]*"
)


# A pronoun's contraction after a cue ("Hi, I'm Alice"): the name comes after it.
CONTRACTION = timed(r"(?i)(?:i|you|we|they|he|she|it|that|there|who|what|let)['’]"
                    r"(?:m|s|re|ve|d|ll)")
# A speaker label at the start of a line: "Vsevolod: Who are you?" (group 2: the first word
# after it, which holds a digit when the label names a field: "DOB: 02/01/1980"; group 3: a
# lower-case word after that, as speech goes on: "Oyelaran: 5 minutes late").
SPEAKER = timed(r"(?m)^[ \t>]*([A-Z][^\W\d_]{1,20})[ \t]*:[ \t]*(\S+)([ \t]+[a-z]{2,})?")
# Labels of a form's fields that are no common words (abbreviations, codes' names): never a
# speaker, whatever the value after them ("BIC: DEUTDEFF", "Dept: Sales", "IBAN: DE 89 ...").
FIELD_LABELS = word_set(
    "acct addr amt approx attn bal bcc bic cvc cvv dept dob doj dl eta exp ext fao fwd iban "
    "mrn nhs nino pmt qty ssn subj swift tel tin txn vat"
)

_COLON = timed(r"[ \t]*:")


def field_label(text: str, start: int, end: int) -> bool:
    """`text[start:end]` is a form's label that is no common word, before its colon ("Qty: 5
    boxes", "Tel: 5 lines", "Attn: Sales"): the name lists know some of them as first names
    ("Qty", "Tel") and spaCy calls some a person."""
    return text[start:end].lower() in FIELD_LABELS and bool(_COLON.match(text, end))


def _is_cap(word: str) -> bool:
    return word[:1].isupper() and not (word.isupper() and len(word) <= 4)


class PersonNameRecognizer(SpanRecognizer):
    """People's names from name lists, initials and cues ("my name is", "Dr.").

    A run of capitalised words is a name when its words are known first names
    or surnames (not common English words); a single known first name alone
    scores lower. Runs that spaCy calls a place are left to the place lists.
    """

    ENTITY = "PERSON"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def strength(self, word: str, *, initial: bool = False) -> int:
        """2: a name and not a common word; 1: a name that is also a word; 0: neither.

        A dictionary noun capitalised mid-sentence ("Todd", "Logan") counts as
        a name when it is popular as one; at the start of a sentence it does not.
        """
        low = word.lower()
        g = self.g
        if low not in g.first and low not in g.last:
            return 0
        if low.endswith("s") and low[:-1] in g.common:  # plural of a word: "Kids", "Tales"
            return 1
        if low in g.places or (low in g.common and low not in g.nouns):
            return 1
        if low in g.nouns and low not in g.common:  # a popular name that is also a noun
            return 2
        if low in g.nouns:
            popular = (
                g.first.get(low, 10**6) <= NOUN_NAME_FIRST_RANK
                or g.last.get(low, 10**6) <= NOUN_NAME_LAST_RANK
            )
            return 2 if popular and not initial else 1
        return 2

    def all_common(self, words: list[str]) -> bool:
        """Whether every word is a common English word and not a strong name ("Discipline")."""
        return all(w.lower() in self.g.common and self.strength(w) < 2 for w in words)

    def _runs(self, doc: Any, caseless: bool) -> Iterator[list[tuple[Any, bool]]]:
        """Runs of space-separated name-like tokens, each with its sentence-initial flag."""
        run: list[tuple[Any, bool]] = []
        prev = None
        whole = doc.text  # built on each access: once here
        for tok in doc:
            text = tok.text
            initial = prev is None or prev.text in SENTENCE_END or "\n" in prev.text
            prev = tok
            # A piece of a word the tokenizer split ("gon" of "gonna") is not a name,
            # nor the first half of one that tokenised text splits itself ("Gon na").
            glued = whole[tok.idx + len(text):tok.idx + len(text) + 1].isalpha() or (
                tok.i + 1 < len(doc) and split_chat_word(text, doc[tok.i + 1].text))
            if caseless:
                ok = (
                    tok.is_alpha
                    and tok.lower_ not in self.g.nouns
                    and self.strength(text, initial=True) == 2
                )
            else:
                ok = (tok.is_alpha or "'" in text or "’" in text) and _is_cap(text)
                ok = ok or bool(INITIAL.fullmatch(text) and (run or text.endswith(".")))
            ok = (ok or bool(run and text.lower() in NAME_PARTICLES)) and not glued
            if ok and (not run or run[-1][0].whitespace_ == " "):
                run.append((tok, initial))
                continue
            if run:
                yield run
            run = [(tok, initial)] if ok else []
        if run:
            yield run

    def _score_run(self, run: list[tuple[str, bool]]) -> float:
        names = [
            (w, i) for w, i in run if not INITIAL.fullmatch(w) and w.lower() not in NAME_PARTICLES
        ]
        strengths = [self.strength(w, initial=i) for w, i in names]
        if not names or max(strengths) == 0:
            return 0.0
        if len(names) >= 2:
            total = sum(strengths)
            if total >= 3:
                return 0.85
            if total >= 2 and 2 in strengths:
                return 0.7
            both = names[0][0].lower() in self.g.first and names[-1][0].lower() in self.g.last
            return 0.5 if both and min(strengths) >= 1 else 0.0
        if len(run) > 1:  # one name word with an initial: "Ella H." / "J. Snider"
            return 0.8
        # Alone, a noun needs to be a very popular name ("Maria", not "Wisdom").
        if self.strength(names[0][0], initial=True) == 2 and len(names[0][0]) > 2:
            return 0.6 if names[0][0].lower() in self.g.first else 0.45
        return 0.0

    def _trim(self, run: list[tuple[Any, bool]]) -> list[tuple[Any, bool]]:
        """Drop common words and particles at either end ("Tell Maria" -> "Maria").

        A popular first name and a surname stay even when both are also words
        ("Rob Ford", "Bill Shorten"; not "Ask Claude"): the pair reads as a name.
        """
        if len(run) == 2 and self._first_last(run[0][0].text, run[1][0].text):
            return run

        def weak(item: tuple[Any, bool]) -> bool:
            tok, initial = item
            low = tok.lower_
            return low in NAME_PARTICLES or (
                low in self.g.common and self.strength(tok.text, initial=initial) < 2
            )

        while run and weak(run[0]):
            run = run[1:]
        while run and weak(run[-1]):
            run = run[:-1]
        return run

    def _first_last(self, first: str, last: str) -> bool:
        f, la = first.lower(), last.lower()
        return (self.g.first.get(f, 10**6) <= NOUN_NAME_FIRST_RANK and la in self.g.last
                and len(f) > 2 and len(la) > 2
                and not {f, la} & (STOP_WORDS | CALENDAR)
                and _is_cap(first) and _is_cap(last))

    def _from_lists(
        self, doc: Any, text: str, places: list[tuple[int, int]], caseless: bool
    ) -> Iterator[tuple[int, int, float]]:
        for raw in self._runs(doc, caseless):
            run = self._trim(raw)
            if not run:
                continue
            start, end = run[0][0].idx, run[-1][0].idx + len(run[-1][0].text)
            if any(s <= start and end <= e for s, e in places):
                continue
            pieces = [[item] for item in run] if len(run) > 4 else [run]
            for piece in pieces:
                score = self._score_run([(t.text, i) for t, i in piece])
                if caseless:
                    score = min(score, 0.5)
                start, end = piece[0][0].idx, piece[-1][0].idx + len(piece[-1][0].text)
                if score and not field_label(text, start, end) and not foreign_phrase(
                        text[start:end], self.g.foreign, self.g.first, self.g.last, text):
                    yield start, end, score

    def _from_cues(self, text: str) -> Iterator[tuple[int, int, float]]:
        for cue, strong in ((STRONG_CUE, True), (WEAK_CUE, False)):
            for m in cue.finditer(text):
                start = pos = m.end()
                end = -1
                w = NAME_WORDS.match(text, pos)
                if w and CONTRACTION.fullmatch(w.group()):  # "Hi, I'm Alice": after "I'm"
                    start = pos = w.end() + 1 if text[w.end():w.end() + 1] == " " else len(text) + 1
                for _ in range(3):
                    w = NAME_WORDS.match(text, pos)
                    if (
                        not w
                        or w.group().lower() in self.g.common
                        and not (strong and _is_cap(w.group()))
                    ):
                        break
                    if not _is_cap(w.group()) and not strong:
                        break
                    end = w.end()
                    pos = end + 1 if text[end : end + 1] == " " else len(text) + 1
                if end > 0:
                    yield start, end, 0.8 if strong else 0.65

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        places = (
            [(e.start_char, e.end_char) for e in artifacts.entities if e.label_ == "LOCATION"]
            if artifacts is not None
            else []
        )
        if artifacts is not None:
            caseless = not any(c.isupper() for c in text)
            yield from self._from_lists(artifacts.tokens, text, places, caseless)
        yield from self._from_cues(text)
        for m in SPEAKER.finditer(text):
            low = m.group(1).lower()
            if any(c.isdigit() for c in m.group(2)) and not m.group(3):
                continue  # a field's label before its value ("SSN: 536-22-8467", "IBAN: GB82...")
            if low not in self.g.common and low not in self.g.places and low not in FIELD_LABELS:
                yield m.start(1), m.end(1), 0.5
