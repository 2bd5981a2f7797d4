"""A person's full name written as one identifier (PERSON).

spaCy reads `config.John_Smith`, `user=john.smith` and `john_smith_cv.pdf` as one word and
finds no name in it, so the name was stored in the clear. A first name and a surname glued by
"_" or "." (both capitalised, or both in lower case with a first name of 4+ letters) are a
name when the first is a popular first name (`POPULAR_FIRST_RANK`), the second a known
surname, and neither a common English word. Code keeps its words: `np.array`,
`self.weight`, `config.max_len`, `df.groupby`, `val_len`, `meta_repo` hold no such pair.
Left: capitals only (`JOHN_SMITH`, a constant's style), mixed case (`john_Smith`) and
CamelCase (`JohnSmith`: on the tweets it takes three account names written without "@" that
the gold set does not label, so its precision drops; see docs/redaction.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from appliance.redact.budget import timed
from appliance.redact.gazetteer import CALENDAR, Gazetteer
from appliance.redact.names import NOUN_NAME_FIRST_RANK, PersonNameRecognizer
from appliance.redact.people import is_ordinary
from appliance.redact.recognizers import SpanRecognizer

# Two words of 3+ letters joined by "_" or ".", not inside a longer word (the lookahead
# finds overlapping pairs: "config.John_Smith" tries "config.John", then "John_Smith").
JOINED = timed(r"(?<![^\W\d_])(?=([A-Z][a-z]{2,}|[a-z]{3,})[_.]([A-Z][a-z]{2,}|[a-z]{3,})"
               r"(?![^\W\d_]))")
GLUED_SCORE = 0.6
# The first name must be this popular: the name lists hold many short words of code as
# first names too, past this rank ("meta" 330, "val" 382, "tok" 519, "repo" 3136).
POPULAR_FIRST_RANK = NOUN_NAME_FIRST_RANK


class GluedNameRecognizer(SpanRecognizer):
    """A first name and a surname written as one identifier (`John_Smith`, `john.smith`)."""

    ENTITY = "PERSON"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer
        self.names = PersonNameRecognizer(gazetteer)

    def full_name(self, first: str, last: str) -> bool:
        """A first name among the `POPULAR_FIRST_RANK` most popular, then a known surname, of
        3+ letters each, neither a common word (nor a stop word, a day or a month) nor a weak
        name (`PersonNameRecognizer.strength`)."""
        f, la = first.lower(), last.lower()
        g = self.g
        return (len(f) >= 3 and len(la) >= 3 and f != la
                and f in g.first and la in g.last
                and g.first[f] <= POPULAR_FIRST_RANK
                and not {f, la} & (STOP_WORDS | CALENDAR)
                and f not in g.common and la not in g.common
                and not is_ordinary(f, g) and not is_ordinary(la, g)
                and self.names.strength(first) == 2 and self.names.strength(last) == 2)

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        if "_" not in text and "." not in text:
            return
        for m in JOINED.finditer(text):
            first, last = m.group(1), m.group(2)
            # snake_case and attributes: "len", "uri" are popular first names
            lower = first.islower() and last.islower() and len(first) >= 4
            if (lower or first[0].isupper() and last[0].isupper()) \
                    and self.full_name(first, last):
                yield m.start(1), m.end(2), GLUED_SCORE
