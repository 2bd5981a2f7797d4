"""A person's full name written as one identifier (PERSON).

spaCy reads `config.John_Smith`, `user=john.smith` and `john_smith_cv.pdf` as one word and
finds no name in it, so the name was stored in the clear. A first name and a surname glued by
"_" or "." (both capitalised, or both in lower case or both in capitals, `JOHN_SMITH`, with
a first name of 4+ letters; in lower case "-" too, `maria-garcia-cv.pdf`; letters of any
script, `José_García`) are a name when the first is a popular first name
(`POPULAR_FIRST_RANK`) and the second a known surname, each a name rather than a word of
code or English:
- a name that is no common English word (`john`, `smith`, `garcia`), unless the model's word
  vectors put it among words rather than names (`str`, `len`, `eps`, `param`: surnames of
  the lists, below `GLUED_SIMILARITY` to the names' centre);
- or a dictionary noun that is also a popular name (`james`, `mary`, `christopher`,
  `miller`, `jackson`, `harris`: WordNet lists saints and people), when the vectors put it
  among names (`NOUN_SIMILARITY`; `data`, `king`, `apple`, `hall`, `price` stay words).
Code keeps its words: `np.array`, `self.weight`, `config.max_len`, `df.groupby`, `val_len`,
`meta_repo`, `args.adam_eps` hold no such pair.
A whole word in CamelCase is one too (`JohnSmith`, `JohnSmith.pdf`), its second part of 4+
letters (`SemVer`, `DevDiv` stay); on the tweets it takes three account names written
without "@" that the gold set does not label, names all the same (see docs/redaction.md).
When one word is surely a name (`sure`: no English word, or a popular noun of 4+ letters,
its vector among the names'), the other may be any popular name of its place, a word too:
surnames that are adjectives, verbs or nouns whose vectors are a word's (`john_brown`,
`tom.cook`, `lisa.king`), first names that are verbs or past rank 250 (`mark.johnson`,
`jack_miller`, `sophia_turner`). Either order (`Smith_John`, `miller.james`, under the first
check only) and, joined by "_", mixed case (`john_Smith`, `Maria_garcia`); a slug's "-" joins
a name in its order only ("john-brown-cv.pdf"; "bain-marie", "dalai-lama" stay).
Left: celebrities' names whose surname is rare or no listed name (`TaylorSwift`, `ElonMusk`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from appliance.redact.budget import timed
from appliance.redact.gazetteer import CALENDAR, Gazetteer
from appliance.redact.names import (
    NOUN_NAME_FIRST_RANK,
    NOUN_NAME_LAST_RANK,
    PersonNameRecognizer,
)
from appliance.redact.people import is_ordinary
from appliance.redact.recognizers import SpanRecognizer

# Two words of 3+ letters joined by "_" or ".", not inside a longer word (the lookahead
# finds overlapping pairs: "config.John_Smith" tries "config.John", then "John_Smith").
# Letters of any script ("josé.garcía", "Jürgen_Müller"); a "-" only in lower case (a slug
# or a file name, "maria-garcia-cv.pdf": capitalised, "Harley-Davidson" is a brand).
JOINED = timed(r"(?<![^\W\d_])(?=([^\W\d_]{3,})([_.\-])([^\W\d_]{3,})(?![^\W\d_]))")
# A first name and a surname of 4+ letters in CamelCase, the whole word ("JohnSmith", not
# "MyJohnSmith" or "JohnSmithCV"): shorter second parts are code's abbreviations ("SemVer",
# "DevDiv", "EriTel").
CAMEL = timed(r"(?<![^\W\d_])([A-Z][a-z]{2,})([A-Z][a-z]{3,})(?![^\W\d_])")
# The word and separator right before a pair ("Ho_" of "Ho_Chi_Minh").
PREVIOUS = timed(r"(?<![^\W\d_])([^\W\d_]+)([_.\-])\Z")
GLUED_SCORE = 0.6
# The first name must be this popular: the name lists hold many short words of code as
# first names too, past this rank ("meta" 330, "val" 382, "tok" 519, "repo" 3136).
POPULAR_FIRST_RANK = NOUN_NAME_FIRST_RANK
# A dictionary noun is a surname here only this popular ("miller" 21, "harris" 30).
POPULAR_LAST_RANK = NOUN_NAME_LAST_RANK
# Cosines to the centre of the popular names' word vectors (first names' for the first word,
# surnames' for the second). Names no common word lie above 0.25 but for one in twenty;
# the surnames of the lists below GLUED_SIMILARITY (0.1% of them) are mostly code and
# English ("str", "len", "eps", "param", "auth", "foo", "shorter"); popular names that are
# nouns lie at 0.30-0.61, nouns of code at or below 0.25 ("portal", "park"; "data" -0.12).
GLUED_SIMILARITY = 0.2
NOUN_SIMILARITY = 0.3
# A part that is surely a name lets the other be any popular name of its place, a word too
# ("john_brown", "mark.johnson"): no English word, listed within SURE_RANK, its vector
# at least SURE_SIMILARITY to the names' centre.
SURE_RANK = 1000
SURE_SHORT_RANK = 100  # a name of 3 letters ("tom", "sam"; "lon" of lat/lon is 225th)
SURE_SIMILARITY = 0.4
SEEN_MAX = 50_000  # words whose cosines are kept (each a listed name, seen in a pair)
CENTRE_RANK = 50  # the names whose vectors make a centre (popular, no dictionary word)
FIRST, LAST = 0, 1


class NameVectors:
    """How close a word's vector lies to popular first names' or surnames' (the spaCy
    model's static vectors); None for a word the vectors do not hold (a rare word)."""

    def __init__(self, g: Gazetteer, vocab: Any) -> None:
        import numpy as np

        self._np, self.vocab = np, vocab
        self.centres = tuple(self._centre(names, g) for names in (g.first, g.last))
        self._seen: dict[tuple[str, int], float | None] = {}

    def _unit(self, word: str) -> Any:
        if not self.vocab.has_vector(word):
            return None
        vec = self.vocab.get_vector(word)
        norm = float(self._np.linalg.norm(vec))
        return vec / norm if norm else None

    def _centre(self, names: dict[str, int], g: Gazetteer) -> Any:
        units = [u for u in (self._unit(w) for w, rank in names.items()
                             if rank <= CENTRE_RANK and len(w) >= 3 and w.isascii()
                             and w.isalpha() and w not in g.common and w not in g.nouns)
                 if u is not None]
        if not units:
            return None
        centre = self._np.mean(units, axis=0)
        return centre / float(self._np.linalg.norm(centre))

    def likeness(self, word: str, slot: int) -> float | None:
        key = (word, slot)
        if key not in self._seen:
            if len(self._seen) >= SEEN_MAX:  # a long-running service: bounded, not a leak
                self._seen.clear()
            unit, centre = self._unit(word), self.centres[slot]
            self._seen[key] = (None if unit is None or centre is None
                               else float(unit @ centre))
        return self._seen[key]


class GluedNameRecognizer(SpanRecognizer):
    """A first name and a surname written as one identifier (`John_Smith`, `john.smith`)."""

    ENTITY = "PERSON"

    def __init__(self, gazetteer: Gazetteer, vocab: Any = None) -> None:
        super().__init__()
        self.g = gazetteer
        self.names = PersonNameRecognizer(gazetteer)
        self.vectors = NameVectors(gazetteer, vocab) if vocab is not None else None
        self._places = frozenset(_folded(p) for p in (*gazetteer.cities, *gazetteer.places)
                                 if " " in p)

    def full_name(self, first: str, last: str, *, loose: bool = True) -> bool:
        """A first name among the `POPULAR_FIRST_RANK` most popular, then a known surname, of
        3+ letters each, neither a stop word, a day or a month, each a name in its place
        (`named`); or, `loose`, one of them surely a name (`sure`) and the other a popular
        name of its place (`popular`), a word too."""
        f, la = first.lower(), last.lower()
        if (len(f) < 3 or len(la) < 3 or f == la
                or {f, la} & (STOP_WORDS | CALENDAR)):
            return False
        if self.named(f, FIRST) and self.named(la, LAST):
            return True
        if not loose:
            return False
        # one part surely a name, the other a popular name of its place that is a word too
        # ("john_brown", "lisa.king"; "mark.johnson", "sophia_turner")
        return ((self.sure(f, FIRST) and self.popular(la, LAST))
                or (self.sure(la, LAST) and self.popular(f, FIRST)))

    def sure(self, low: str, slot: int) -> bool:
        """A listed name of this place whose vector lies among the names'
        (`SURE_SIMILARITY`), no verb, adjective or adverb: one of `SURE_RANK` that is no
        word ("john", "sophia", "johnson"), or a popular one of 4+ letters that is a noun or
        a place too ("mary", "paul", "miller"); 3 letters, only a popular one that is no
        word ("tom", "sam"). A surname must be more popular as a surname than as a first
        name ("adam" is no surname here)."""
        g = self.g
        rank = (g.first if slot == FIRST else g.last).get(low)
        short = len(low) < 4
        if (rank is None or rank > (SURE_SHORT_RANK if short else SURE_RANK)
                or is_ordinary(low, g) or (slot == LAST and g.first.get(low, rank) < rank)):
            return False
        if ((low in g.common or self.names.strength(low) < 2)
                and (short or not self.popular(low, slot))):
            return False
        like = self.vectors.likeness(low, slot) if self.vectors is not None else None
        return like is not None and like >= SURE_SIMILARITY

    def popular(self, low: str, slot: int) -> bool:
        """A name among the most popular of its place, whatever else it is ("brown",
        "white", "king", "price"; "mark", "jack", "grace")."""
        rank = (self.g.first if slot == FIRST else self.g.last).get(low)
        return rank is not None and rank <= (POPULAR_FIRST_RANK if slot == FIRST
                                             else POPULAR_LAST_RANK)

    def named(self, low: str, slot: int) -> bool:
        """A listed name of this place (first name, surname) that the vectors do not put
        among words: no common word (nor a weak name, `PersonNameRecognizer.strength`), or
        a popular one that is a dictionary noun and close to the names."""
        g = self.g
        rank = (g.first if slot == FIRST else g.last).get(low)
        if rank is None or (slot == FIRST and rank > POPULAR_FIRST_RANK):
            return False
        like = self.vectors.likeness(low, slot) if self.vectors is not None else None
        if (low not in g.common and not is_ordinary(low, g)
                and self.names.strength(low) == 2):
            return like is None or like >= GLUED_SIMILARITY
        # a popular name that is a dictionary noun ("james", "miller"), a place ("mary",
        # "mendoza") or looks inflected ("torres"), never a verb, adjective or adverb
        popular = rank <= (POPULAR_FIRST_RANK if slot == FIRST else POPULAR_LAST_RANK)
        word = low in g.common and low not in g.nouns
        return popular and not word and like is not None and like >= NOUN_SIMILARITY

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        for m in CAMEL.finditer(text):
            if (self.full_name(m.group(1), m.group(2))
                    and not self._place(text, m.start(1), m.group(1), "", m.group(2))):
                yield m.start(1), m.end(2), GLUED_SCORE
        if "_" not in text and "." not in text and "-" not in text:
            return
        for m in JOINED.finditer(text):
            first, sep, last = m.group(1), m.group(2), m.group(3)
            if not self._written_as_name(first, sep, last):
                continue
            if sep == "-":  # a slug, in its order: "bain-marie", "dalai-lama" are words
                named = len(first) >= 4 and self.full_name(first, last)
            else:  # either order: "maria_garcia", "Garcia_Maria" (a list's or a form's)
                named = ((self._given(first) and self.full_name(first, last))
                         or (self._given(last) and self.full_name(last, first, loose=False)))
            if named and not self._place(text, m.start(1), first, sep, last):
                yield m.start(1), m.end(3), GLUED_SCORE

    @staticmethod
    def _written_as_name(first: str, sep: str, last: str) -> bool:
        """Both words in lower case or in capitals (snake_case, constants), or capitalised
        (`John_Smith`), or joined by "_" each in lower case or capitalised (`john_Smith`;
        `module.Class` is code's); a "-" only in lower case (a slug; capitalised,
        "Harley-Davidson" is a brand)."""
        if first.islower() and last.islower():
            return True
        if sep == "-":
            return False
        if (first.isupper() and last.isupper()) or (first.istitle() and last.istitle()):
            return True
        return sep == "_" and (first.istitle() or first.islower()) and (
            last.istitle() or last.islower())

    def _given(self, word: str) -> bool:
        """The first name's word, as written: capitalised, or of 4+ letters, or surely a
        name ("tom", "sam"): "len", "uri", "max" of snake_case are popular first names."""
        return word.istitle() or len(word) >= 4 or self.sure(word.lower(), FIRST)

    def _place(self, text: str, start: int, first: str, sep: str, last: str) -> bool:
        """A city's or place's name written as one identifier, the word before it
        included: time zones ("America/Sao_Paulo", "Asia/Hong_Kong", "Asia/Ho_Chi_Minh"),
        which a first name and a surname also spell."""
        words = [first, last]
        before = PREVIOUS.search(text, max(0, start - 40), start)
        if before is not None and before.group(2) == sep:
            words.insert(0, before.group(1))
        for n in (2, 3)[:len(words) - 1]:
            name = _folded(" ".join(words[-n:]))
            if name in self._places:
                return True
        return False


def _folded(name: str) -> str:
    """Lower case, without accents: "Sao Paulo" and "São Paulo", "Ho Chi Minh" and
    "Hồ Chí Minh" are one name."""
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", name.lower())
                   if not unicodedata.combining(c))
