"""Presidio's URL recogniser, its "Non schema URL" pattern tried only where it can match.

Presidio's `UrlRecognizer` looks for a host without `http://` anywhere in the text:
`((www\\d{0,3}[.])?[a-z0-9.\\-]{1,253}[.](?:TLD|...)(?:/[^\\s()<>"']*)?)`, with some 450
top-level domains. From every position of a run of letters, digits, dots and dashes the
engine takes up to 253 characters and backs off one at a time, trying the whole list of
domains at each dot: about 0.6 ms of CPU a character on `x.x.x.x...` (19 s for 30,000
characters, 6 s on `ab-cd.ab-cd...`), so such a prompt ran past its budget and was refused.

Here the same compiled expression is run only at the positions where it matches (the same
matches, in the same order, as its `finditer`), found in one pass. The expression matches
at `p` exactly when (a) a dot followed by a listed domain (a "domain dot") stands at some
`d` with `p < d <= p + 253` and every character of `text[p:d]` is in the host's class (the
non-`www` branch), or (b) `www\\d{0,3}[.]` matches at `p` with length `k` and (a) holds at
`p + k` (the `www` branch: its host starts after it). Neither the expression nor these
tests look behind `p`, so positions that fail them are skipped as `finditer` would have
found them failing; each position that passes them is matched, and the search goes on from
the end of its match, as `finditer` does.

Each hit then runs on over a port and the path after it (`PORT_PATH`), which Presidio's
expressions leave out.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator
from typing import Any

import regex

HOST_MAX = 253
# Presidio's expression around its list of top-level domains; the list is taken from it.
HEAD = r"((www\d{0,3}[.])?[a-z0-9.\-]{1,253}[.](?:"
TAIL = r")(?:/[^\s()<>\"']*)?)"
HOST_CLASS = r"[a-z0-9.\-]"
WWW = r"www\d{0,3}[.]"
NON_SCHEMA = "Non schema URL"


def domain_list(base: str) -> str | None:
    """The top-level domains' alternation of Presidio's `BASE_URL_REGEX`, as `(?:...)`, or
    None when the expression is not the shape this module knows (a Presidio upgrade)."""
    if not (base.startswith(HEAD) and base.endswith(TAIL)):
        return None
    return "(?:" + base[len(HEAD):len(base) - len(TAIL)] + ")"


class CandidateScan:
    """`finditer` of a compiled "Non schema URL" expression, matching only where it can."""

    def __init__(self, compiled: Any, domains: str) -> None:
        self._compiled = compiled
        flags = compiled.flags
        self._runs = regex.compile(HOST_CLASS + "+", flags)
        self._dots = regex.compile(r"[.](?=" + domains + ")", flags)
        self._www = regex.compile("(?=(" + WWW + "))", flags)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._compiled, name)

    def finditer(self, text: str, pos: int = 0, *, timeout: float | None = None) -> Iterator[Any]:
        """The matches `compiled.finditer(text, pos)` finds, in order; `TimeoutError` past
        `timeout` seconds of the process's CPU (as `regex` counts it)."""
        limit = None if timeout is None else float(timeout)
        end = None if limit is None or limit < 0 else time.process_time() + limit

        def left() -> float | None:
            if end is None:
                return None
            rest = end - time.process_time()
            if rest <= 0:
                raise TimeoutError("regex timed out")
            return rest

        for start, last in self._starts(text, pos, left):
            p = max(start, pos)
            while p <= last:
                m = self._compiled.match(text, p, timeout=left())
                if m is None:  # never: each position of a range matches (module doc)
                    p += 1
                    continue
                yield m
                pos = p = m.end()

    def _starts(self, text: str, pos: int, left: Any) -> list[tuple[int, int]]:
        """The ranges (first, last position) where the expression matches, sorted."""
        runs = [m.span() for m in self._runs.finditer(text, pos, timeout=left())]
        run_starts = [s for s, _ in runs]
        ranges: list[tuple[int, int]] = []
        for m in self._dots.finditer(text, pos, timeout=left()):
            d = m.start()
            run_start = runs[bisect.bisect_right(run_starts, d) - 1][0]
            first = max(run_start, d - HOST_MAX, pos)
            if first < d:
                ranges.append((first, d - 1))
        merged = _merge(ranges)
        firsts = [a for a, _ in merged]

        def host_starts(q: int) -> bool:
            i = bisect.bisect_right(firsts, q) - 1
            return i >= 0 and q <= merged[i][1]

        www = [(m.start(), m.start()) for m in self._www.finditer(text, pos, timeout=left())
               if host_starts(m.end(1))]
        return _merge(sorted(merged + www))


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted inclusive ranges, overlapping or touching ones joined."""
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and a <= out[-1][1] + 1:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


# A port after a URL's host, and the path after it: Presidio's expressions take a path only
# right after the domain, so "https://intranet.corp.com:8443/users/jsmith/payslip.pdf" was
# "<URL>:8443/users/jsmith/payslip.pdf", the path (a user's name in it) left in the clear.
PORT_PATH = regex.compile(r":[0-9]{1,5}(?![0-9])(?:/[^\s()<>\"']*)?")
# Presidio's expressions end at a listed domain with no boundary after it, so they cut a
# word: "k.tr" of `q@k.transpose(-2, -1)` (Turkey's .tr), "np.ar" of `np.array(x)`, "df.gr"
# of `df.groupby()`, "example.com" of "example.community": `<URL>anspose`, `<URL>ray`. A
# hit that a word character follows is no host there: without a scheme it is dropped (a
# piece of code or of a longer word); after `http(s)://` or `www.` the host and path run on
# to the word's end ("https://example.community/x", "www.example.community" whole).
MID_WORD = regex.compile(r"\w")
SCHEMA = regex.compile(r"[\"']?(?:https?://|www\d{0,3}[.])", regex.IGNORECASE)
HOST_REST = regex.compile(r"[a-z0-9.\-]*(?:/[^\s()<>\"']*)?", regex.IGNORECASE)


def url_recognizer() -> Any:
    """Presidio's `UrlRecognizer` (same name, patterns, scores and context words), its
    "Non schema URL" pattern run through `CandidateScan` (Presidio's own when its expression
    is not the shape `CandidateScan` knows), each hit taking the port and path after it, a
    hit that ends inside a word dropped (no scheme) or run on to the word's end."""
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import UrlRecognizer

    class PortedUrlRecognizer(UrlRecognizer):
        """Presidio's hits, none ending inside a word, each run on over a `:port` and the
        path after it."""

        def analyze(self, text: str, entities: Any, nlp_artifacts: Any = None,
                    regex_flags: Any = None) -> Any:
            kept = []
            for r in super().analyze(text, entities, nlp_artifacts, regex_flags) or []:
                if MID_WORD.match(text, r.end):
                    if not SCHEMA.match(text, r.start):
                        continue
                    r.end = HOST_REST.match(text, r.end).end()
                m = PORT_PATH.match(text, r.end)
                if m is not None:
                    r.end = m.end()
                kept.append(r)
            return kept

    found = domain_list(UrlRecognizer.BASE_URL_REGEX)
    if found is None:
        return PortedUrlRecognizer(name="UrlRecognizer")
    domains: str = found

    class ScannedPattern(Pattern):
        """A pattern whose compiled expression is run through `CandidateScan`
        (`failclosed.bound_patterns` keeps `wrap_compiled` when it bounds the pattern)."""

        def wrap_compiled(self, compiled: Any) -> Any:
            return CandidateScan(compiled, domains)

        @property
        def compiled_regex(self) -> Any:
            return self.__dict__.get("_scanned")

        @compiled_regex.setter
        def compiled_regex(self, compiled: Any) -> None:
            self.__dict__["_scanned"] = (None if compiled is None
                                         else self.wrap_compiled(compiled))

    patterns = [ScannedPattern(p.name, p.regex, p.score) if p.name == NON_SCHEMA else p
                for p in UrlRecognizer.PATTERNS]
    return PortedUrlRecognizer(patterns=patterns, name="UrlRecognizer")
