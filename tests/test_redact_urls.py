"""A long run of dotted words (`x.x.x.x...`, `ab-cd.ab-cd...`: a pasted hash list, a log line,
a version dump) is redacted, not refused. Presidio's "Non schema URL" pattern was tried from
every position of such a run, backing off over up to 253 characters and some 450 top-level
domains at each dot: about 0.6 ms of CPU a character, so a 30,000-character prompt ran past
its 5 s budget (`pattern_timeout_s`) and came back `unredactable` after holding the ingest
worker for it. Semtrace's `UrlRecognizer` (appliance/redact/urls.py) runs the same pattern
only where it matches: the same URLs, in time linear in the text. Real Presidio and spaCy."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import regex
from conftest import make_prompt

from appliance.records import Redacted

LENGTH = 30_000
URL = "quimby-dotted.example.com/reset?t=8"
MAIL = "rosalind.quimby@example.org"


def dotted(unit: str) -> str:
    """A prompt of LENGTH characters: a URL and an e-mail address, then a run of `unit`."""
    head = f"The link is {URL}, mail {MAIL} about this dump: "
    return (head + unit * (LENGTH // len(unit)))[:LENGTH]


@pytest.mark.parametrize("unit", ["x.", "ab-cd."])
def test_a_long_dotted_run_is_redacted_not_refused(redactor: Any, unit: str) -> None:
    """Before: refused, "the pattern 'Non schema URL' of UrlRecognizer ran past the prompt's
    time budget (5 s of CPU, pattern_timeout_s)" (19 s of CPU needed for `x.`, 6 s for
    `ab-cd.`); now redacted in about 0.2 s, the URL and the address replaced."""
    text = dotted(unit)
    [out] = redactor.redact_many([make_prompt(text)])
    assert isinstance(out, Redacted), f"refused: {getattr(out, 'reason', out)}"
    assert URL not in out.text and "quimby-dotted" not in out.text
    assert MAIL not in out.text
    assert "<EMAIL_ADDRESS" in out.text
    assert out.text.endswith(text[-200:])  # the run itself is kept as it was


def _presidio_and_ours(redactor: Any) -> tuple[Any, Any]:
    from presidio_analyzer.predefined_recognizers import UrlRecognizer

    ours = next(r for r in redactor._analyzer.registry.recognizers
                if r.name == "UrlRecognizer")
    return UrlRecognizer(), ours


SENTENCES = [
    "see example.com, www.example.co.uk/a/b?c=d and https://docs.python.org/3/ today",
    "Mail alice.smith@corp.local or visit WWW2.Example.ORG/path (not example.community)",
    "pin numpy==1.26.4, see github.com/numpy/numpy; v1.2.3.tar.gz; 10.0.0.7; a.b.c.d.e",
    "'quoted.example.net' and \"http://quoted.example.io\" and www123.shop.de/x",
    "www.com www.x.com wwww.abc.it www1234.abc.it " + "y." * 130 + "example.com",
    "x" * 260 + ".com and " + "a-" * 140 + ".org and www." + "b" * 252 + ".net/p",
]


def test_normal_text_gives_the_same_url_hits_as_presidios(redactor: Any) -> None:
    """Our recogniser's hits (span, score, pattern) are Presidio's own on ordinary text, but
    for those that end inside a word without a scheme or `www.` before them, which are
    dropped ("example.com" of "example.community", "alice.sm" of "alice.smith@corp.local")."""
    theirs, ours = _presidio_and_ours(redactor)

    def hits(rec: Any, text: str) -> list[tuple[int, int, float, str]]:
        return sorted((r.start, r.end, r.score, r.analysis_explanation.pattern_name)
                      for r in rec.analyze(text, ["URL"]))

    dropped = 0
    for text in SENTENCES:
        whole = [h for h in hits(theirs, text) if not regex.match(r"\w", text[h[1]:])]
        dropped += len(hits(theirs, text)) - len(whole)
        assert hits(ours, text) == whole, text
    assert hits(ours, SENTENCES[0])  # it does find URLs
    assert dropped == 2  # "alice.sm" of "alice.smith@...", "example.com" of "example.community"


# Pieces of the generated texts: dots, dashes, `www` prefixes, listed domains (".Cd" in
# another case, ".community" that starts with one), paths, quotes, letters outside the host's
# class and look-alikes that IGNORECASE folds into it (Kelvin sign, long s).
PIECES = ["x", ".", "-", "www", "WWW", "w", "1", "123", "1234", ".com", ".co", ".uk", ".Cd",
          "ab", "/", "/path", " ", "\n", "'", '"', "(", "_", "@", "é", "\u212a", "\u017f",
          "\u0663", ".community", "http://", ".."]
# Runs at the expression's 253-character limit: a `www` prefix (or a near miss, or none),
# then a run of host characters, dotted or not, then a domain (or a dot that starts none).
PREFIXES = ["", "", "www.", "WWW123.", "www1234.", "wWw7.", "ww.", "www12", "www..",
            "http://www."]
UNITS = ["a", "x.", "ab-cd.", "1", "x-", "a.b"]
ENDS = [".com", ".Cd/p", ".community", ".co.uk", ".", ".com.", "\u212a"]


def generated(rng: random.Random) -> Iterator[tuple[str, int]]:
    """(text, start position): 500 texts of 3 to 120 pieces, then 300 whose prefix and run
    of host characters end before a domain within 2 of the 253-character limit (where a
    host after `www1234.` is in reach and one counted from its first `w` is not), or fall
    short of it or run past it."""
    for _ in range(500):
        text = "".join(rng.choice(PIECES) for _ in range(rng.choice([3, 10, 40, 120])))
        yield text, rng.choice([0, 0, rng.randrange(len(text) + 1)])
    for _ in range(300):
        prefix = rng.choice(PREFIXES)
        length = max(0, 253 - len(prefix) + rng.choice([-2, -1, 0, 1, 2,
                                                         rng.randrange(-250, 60)]))
        unit = rng.choice(UNITS)
        around = ["".join(rng.choice(PIECES) for _ in range(rng.choice([0, 1, 3, 8])))
                  for _ in range(2)]
        text = (around[0] + prefix + (unit * (length // len(unit) + 1))[:length]
                + rng.choice(ENDS) + around[1])
        yield text, rng.choice([0, 0, rng.randrange(len(text) + 1)])


def test_the_pattern_matches_where_presidios_finditer_does_and_is_tried_nowhere_else() -> None:
    """On 800 generated texts (fixed seed; `generated`) `CandidateScan` yields exactly the
    matches of Presidio's `finditer`, from any start position, and calls the expression only
    at positions where it matches. Presidio's `finditer` is the slow part (what urls.py
    avoids): texts of many runs hundreds of characters long took it minutes, so the long runs
    here are one a text, at the limit where an off-by-one would show."""
    from presidio_analyzer.predefined_recognizers import UrlRecognizer

    from appliance.redact.urls import NON_SCHEMA, CandidateScan, domain_list

    domains = domain_list(UrlRecognizer.BASE_URL_REGEX)
    assert domains is not None, "Presidio's URL expression changed shape: urls.py is unused"
    pattern = next(p for p in UrlRecognizer.PATTERNS if p.name == NON_SCHEMA)
    compiled = regex.compile(pattern.regex, regex.DOTALL | regex.MULTILINE | regex.IGNORECASE)

    class Counting:
        flags = compiled.flags
        tried = failed = 0

        def match(self, *args: Any, **kwargs: Any) -> Any:
            m = compiled.match(*args, **kwargs)
            Counting.tried += 1
            Counting.failed += m is None
            return m

    scan = CandidateScan(Counting(), domains)
    found = 0
    for text, pos in generated(random.Random(178)):
        expected = [m.span() for m in compiled.finditer(text, pos)]
        assert [m.span() for m in scan.finditer(text, pos)] == expected, (text, pos)
        found += len(expected)
    assert found > 1000
    assert Counting.tried == found and Counting.failed == 0


@pytest.mark.parametrize(("text", "leaked"), [
    # a port after the host: Presidio's expressions stop at the domain, so the port and
    # the path after it (a user's name in it) were left after "<URL>"
    ("see https://intranet.corp.com:8443/users/jsmith/payslip.pdf for it",
     ["8443", "jsmith", "payslip"]),
    ("open www.example.co.uk:8080/admin?user=jsmith now", ["8080", "jsmith"]),
    # the password in a URL's user part (policy url_credentials): before, it stayed where
    # the host was an IP address
    ("connect to mongodb://root:Passw0rd@10.0.0.5:27017/admin", ["Passw0rd"]),
    ("redis://:mypassword123@cache.internal:6379/0 is the cache", ["mypassword123"]),
])
def test_a_urls_port_path_and_password_are_redacted_with_it(redactor: Any, text: str,
                                                             leaked: list[str]) -> None:
    [out] = redactor.redact_many([make_prompt(text)])
    assert isinstance(out, Redacted)
    assert [word for word in leaked if word in out.text] == [], out.text


@pytest.mark.parametrize(("text", "kept"), [
    ("the server listens on example.com: 3 ports are open", ": 3 ports are open"),
    ("clone ssh://git@github.com/org/repo.git and run it", "clone ssh://"),  # no password
])
def test_a_colon_after_a_url_without_a_port_is_left(redactor: Any, text: str,
                                                    kept: str) -> None:
    [out] = redactor.redact_many([make_prompt(text)])
    assert isinstance(out, Redacted)
    assert "SECRET" not in out.text and kept in out.text, out.text
