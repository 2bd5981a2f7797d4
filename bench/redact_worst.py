"""Redaction's worst case: one analysis of a prompt packed with PII, by length.

usage: .venv/bin/python bench/redact_worst.py [--chars 1000,4000,8000,32768] [--runs N]
       [--presidio-up-to CHARS] [--json]

The prompt repeats one sentence with a phone number, an e-mail address, a card number and an
IBAN (a new address each time) up to the length asked for; 32,768 characters is the longest
prompt the service takes (`max_text_chars`). Each length is timed with the redactor as it is
(`LinearContextEnhancer`, appliance/redact/enhancer.py) and, up to `--presidio-up-to`
characters (default 8,000: at 32,768 it took minutes), with Presidio's own
`LemmaContextAwareEnhancer` swapped in (matching context words as whole words, as the
redactor does), the code before. Both must find the same spans with
the same scores: the script says so, or stops. Median wall time of `--runs` runs, after one
warm-up run per length.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SENTENCE = ("Call me on +1 415 555 0134 or mail jo.smith{i}@example.org, card 4111 1111 1111 "
            "1111, IBAN GB82 WEST 1234 5698 7654 32. ")


def dense(chars: int) -> str:
    """`chars` characters of PII-packed sentences."""
    parts: list[str] = []
    size = i = 0
    while size < chars:
        parts.append(SENTENCE.format(i=i))
        size += len(parts[-1])
        i += 1
    return "".join(parts)[:chars]


def timed(redactor: Any, text: str, runs: int) -> tuple[float, list[Any]]:
    """Median seconds of `analyze` over `runs` runs after a warm-up, and its hits."""
    hits = redactor.analyze(text)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        redactor.analyze(text)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), hits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", default="1000,4000,8000,32768",
                        help="prompt lengths, comma-separated (default 1000,4000,8000,32768)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per length (default 3)")
    parser.add_argument("--presidio-up-to", type=int, default=8000,
                        help="time Presidio's own enhancer up to this length (default 8000)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    try:
        lengths = [int(c) for c in args.chars.split(",")]
    except ValueError:
        parser.error("--chars takes whole numbers separated by commas, e.g. 1000,4000")
    if args.runs < 1 or any(n < 1 for n in lengths):
        parser.error("--runs and every --chars length must be at least 1")

    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    from appliance.config import RedactionSettings, load_policy
    from appliance.redact import Redactor
    from appliance.redact.enhancer import LinearContextEnhancer, whole_word_match

    class PresidioWholeWords(LemmaContextAwareEnhancer):  # type: ignore[misc]
        """Presidio's own enhancer, matching context words as whole words as the redactor's."""

        def _find_supportive_word_in_context(self, words: Any, context: Any, *_: Any) -> str:
            return whole_word_match(words, context)

    note = sys.stderr if args.json else sys.stdout
    with tempfile.TemporaryDirectory() as tmp:
        redactor = Redactor(load_policy("redaction", RedactionSettings), cache_dir=Path(tmp))
        analyzer = redactor._analyzer
        ours = analyzer.context_aware_enhancer
        assert isinstance(ours, LinearContextEnhancer)
        presidio = PresidioWholeWords() if ours.whole_words else LemmaContextAwareEnhancer()
        rows = []
        for chars in lengths:
            text = dense(chars)
            print(f"{chars} characters ...", file=note, flush=True)
            linear, hits = timed(redactor, text, args.runs)
            row: dict[str, Any] = {"chars": chars, "hits": len(hits), "linear_s": linear,
                                   "presidio_s": None}
            if chars <= args.presidio_up_to:
                analyzer.context_aware_enhancer = presidio
                row["presidio_s"], old_hits = timed(redactor, text, args.runs)
                analyzer.context_aware_enhancer = ours
                if old_hits != hits:
                    print(f"at {chars} characters the two enhancers found different spans",
                          file=sys.stderr)
                    return 1
            rows.append(row)
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"runs": args.runs, "load_average": load, "rows": rows}))
        return 0
    print(f"load average {load:.2f} on {os.cpu_count()} cores; median of {args.runs} runs")
    print("| characters | hits | linear enhancer, s | Presidio's enhancer, s |")
    print("|---|---|---|---|")
    for r in rows:
        old = "-" if r["presidio_s"] is None else f"{r['presidio_s']:.3f}"
        print(f"| {r['chars']:,} | {r['hits']} | {r['linear_s']:.3f} | {old} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
