"""Redaction's time on adversarial prompts, step by step: what the prompt's budget must cover.

usage: .venv/bin/python bench/redact_budget.py [--chars 32768] [--runs N] [--only NAME,...]
       [--whole-only] [--json]
       .venv/bin/python bench/redact_budget.py --sweep [--sizes 2000,4000,8000,16000]
       [--only NAME,...] [--json]

Each input is `--chars` characters (default 32,768, `max_text_chars`, the longest prompt the
service takes) of one shape built to make a step work hard: PII-packed sentences, runs of
capitalised words, hashtags, digit groups, spelled-out addresses, street lines, place cues,
speaker lines, one long word, runs of dotted words (Presidio's URL pattern). For each, the
median of `--runs` runs (after a warm-up) of: the whole analysis (`Redactor.analyze`, under
the policy's `pattern_timeout_s`: "refused" counts the runs, warm-up included, that ran past
it), in wall-clock time and in CPU time of
the thread (the difference is time spent waiting for a core), spaCy's NER alone, and each
recogniser alone on spaCy's output, of which the slowest of Semtrace's own and the slowest
of Presidio's are printed (not with `--whole-only`). Works on the
code before the budget covered Semtrace's recognisers too (same calls), for a before/after.

`--sweep` times what runs before the prompt's budget is first checked, which the budget cannot
stop, on runs of one shape (`SWEEP`: one punctuation character repeated, alternating
punctuation, emoticons, emoji, combining marks, a long word, ...) at each of `--sizes`
characters: CPU seconds (`time.process_time`) of the normalisation, of spaCy's tokenizer alone
and of spaCy's whole pipeline on the text the redactor gives spaCy (`spacy_text` of the
normalised text where the code has it, else the normalised text), then of the whole analysis
(`Redactor.analyze` under the policy's budget: "refused" when it was) at the largest size. A
cost that grows with the square of the length shows as x4 from one size to the next (x2:
linear). Works on the code before `spacy_text` existed (same calls), for a before/after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES: dict[str, str] = {
    "pii": ("Call me on +1 415 555 0134 or mail jo.smith{i}@example.org, card 4111 1111 1111 "
            "1111, IBAN GB82 WEST 1234 5698 7654 32. "),
    "capitals": "Alice Smith Bob Jones Paris London Main Street River Road ",
    "hashtags": "#Paris{i} #TeamAustralia #cheadle #NewYorkCity ",
    "digits": "12 34 56 78 90 ",
    "spelled": "jane{i} at example dot zz, ",
    "streets": "12 Main Street, Springfield, ",
    "cues": "in New York at London near Paris from kilmallock to ",
    "speakers": "Alice: hi\nBob said that Carol told Dave ",
    "long-word": "x",
    "caps-word": "ABCD",
    "dots": "x.",
    "dashed-dots": "ab-cd.",
}


# Shapes for `--sweep`: each is repeated without a space to the size asked.
SWEEP: dict[str, str] = {
    "run comma": ",",
    **{f"run {c}": c for c in ("'", '"', "`", "!", "?", "*", "=", "_", "#", "$", "%", "+",
                               "(", ")", "<", "&", ":", ";", "\u2014", "\u2026", "\u00bf",
                               "\u00ab", "\u2019", "\u201c", "-", ".", "~", "/", "@", "^", "|",
                               "\\")},
    **{f"alternating {u}": u for u in ("'\"", "()", "[]", ".'", "-'", "!?", "'a", "a!")},
    **{f"affix {u}": u for u in ("US$", "C$", "'s", "\u2019s")},
    **{f"emoticon {u}": u for u in (":D", ":)", "<3", "^_^", ":-P", "o.O")},
    "emoji": "\U0001F600",
    "emoji flag": "\U0001F1EB\U0001F1F7",
    "emoji skin tone": "\U0001F44D\U0001F3FD",
    "combining marks": "\u0301",
    "combining marks of two classes": "\u0301\u0316",
    "long word": "x",
    "url": "a.",
    "colons": "a:",
    "colons before an at": "a:a.b@",
    "ligature \ufdfa": "\ufdfa",
    "ligature \ufdfb": "\ufdfb",
    "squared \u3316": "\u3316",
    "parenthesised \u247d": "\u247d",
    "squared \u33af": "\u33af",
    "63 quotes then a word": "'" * 63 + "a",
    "63 quotes and a space": "'" * 63 + " ",
}


def sweep_text(shape: str, chars: int) -> str:
    """`chars` characters of one `SWEEP` shape (combining marks after a base letter)."""
    unit = SWEEP[shape]
    text = unit * (chars // len(unit) + 1)
    return ("x" + text)[:chars] if shape.startswith("combining") else text[:chars]


def sweep(redactor: Any, shape: str, sizes: list[int]) -> dict[str, Any]:
    """CPU seconds of each step before the budget's first check, at each size (one run each),
    and of the whole analysis at the largest size."""
    import appliance.redact as redact_module
    from appliance.redact.failclosed import RedactionFailed
    from appliance.redact.normalize import normalize

    shown = getattr(redact_module, "spacy_text", lambda text: text)
    nlp = redactor._nlp
    engine = redactor._analyzer.nlp_engine
    row: dict[str, Any] = {"shape": shape, "unit": SWEEP[shape], "sizes": {}}
    for size in sizes:
        text = sweep_text(shape, size)
        c0 = time.process_time()
        seen = normalize(text).text
        c1 = time.process_time()
        given = shown(seen)
        c2 = time.process_time()
        with nlp.memory_zone():
            nlp.tokenizer(given)
            c3 = time.process_time()
            engine.process_text(given, "en")
            c4 = time.process_time()
        row["sizes"][size] = {"normalize_s": c1 - c0, "spacy_text_s": c2 - c1,
                              "tokenizer_s": c3 - c2, "spacy_s": c4 - c3,
                              "normalized_chars": len(seen)}
    c0 = time.process_time()
    try:
        redactor.analyze(sweep_text(shape, sizes[-1]))
        row["refused"] = None
    except RedactionFailed as failed:
        row["refused"] = str(failed)
    row["whole_cpu_s"] = time.process_time() - c0
    return row


def print_sweep(rows: list[dict[str, Any]], sizes: list[int]) -> None:
    """The sweep as a table: normalisation / tokenizer / spaCy CPU seconds at each size."""
    print(f"CPU seconds (time.process_time), one run each; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; normalise / spaCy's tokenizer "
          f"/ spaCy's pipeline at each size; the whole analysis at {sizes[-1]:,}")
    print("| shape | " + " | ".join(f"{n:,}" for n in sizes) + " | x per doubling "
          "| whole analysis | refused |")
    print("|---|" + "---|" * (len(sizes) + 3))
    for r in rows:
        cells = [r["sizes"][n] for n in sizes]
        growth = [b["spacy_s"] / a["spacy_s"] for a, b in zip(cells, cells[1:], strict=False)
                  if a["spacy_s"] > 0]
        print(f"| {r['shape']} | " + " | ".join(
            f"{c['normalize_s']:.3f} / {c['tokenizer_s']:.3f} / {c['spacy_s']:.3f}"
            for c in cells) + f" | {growth[-1] if growth else 0:.1f} | {r['whole_cpu_s']:.2f} "
            f"| {'yes' if r['refused'] else 'no'} |")


def text_of(shape: str, chars: int) -> str:
    """`chars` characters of one repeated shape (a new number in each copy where it has one)."""
    parts: list[str] = []
    size = i = 0
    while size < chars:
        parts.append(SHAPES[shape].replace("{i}", str(i)))
        size += len(parts[-1])
        i += 1
    return "".join(parts)[:chars]


def median_time(fn: Callable[[], Any], runs: int) -> float:
    """Median seconds of `fn` over `runs` runs after one warm-up run."""
    return median_times(fn, runs)[0]


def median_times(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median wall-clock seconds and median CPU seconds of this thread (`time.thread_time`,
    what the prompt's budget is charged in) of `fn` over `runs` runs after a warm-up run."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall), statistics.median(cpu)


def measure(redactor: Any, text: str, runs: int, *, whole_only: bool = False) -> dict[str, Any]:
    """The whole analysis, spaCy alone and each recogniser alone on one text (seconds)."""
    from appliance.redact.failclosed import RedactionFailed
    from appliance.redact.normalize import normalize

    refused: list[str] = []

    def whole() -> None:
        try:
            redactor.analyze(text)
        except RedactionFailed as failed:
            refused.append(str(failed))

    row: dict[str, Any] = {}
    row["whole_s"], row["whole_cpu_s"] = median_times(whole, runs)
    row["refused"] = refused[-1] if refused else None
    row["refused_runs"] = len(refused)
    if whole_only:
        return row
    seen = normalize(text).text
    engine = redactor._analyzer.nlp_engine
    nlp = redactor._nlp
    with nlp.memory_zone():
        row["spacy_s"] = median_time(lambda: engine.process_text(seen, "en"), runs)
        artifacts = engine.process_text(seen, "en")
        entities = list(redactor._entities)
        per: dict[str, float] = {}
        for rec in redactor._analyzer.registry.recognizers:
            per[str(rec.name)] = median_time(
                lambda rec=rec: _quiet(rec, seen, entities, artifacts), runs)
    ours = {k: v for k, v in per.items() if k.startswith("semtrace_")}
    theirs = {k: v for k, v in per.items() if not k.startswith("semtrace_")}
    for label, group in (("ours", ours), ("presidio", theirs)):
        name = max(group, key=lambda k: group[k])
        row[f"{label}_slowest"], row[f"{label}_slowest_s"] = name, group[name]
        row[f"{label}_total_s"] = sum(group.values())
    return row


def _quiet(rec: Any, text: str, entities: list[str], artifacts: Any) -> None:
    """One recogniser alone, outside any prompt's budget (its refusals not counted here)."""
    with contextlib.suppress(Exception):  # a recogniser's failure is the whole run's to show
        rec.analyze(text, entities, artifacts)


def run_sweep(redactor: Any, shapes: list[str], sizes: list[int], *, as_json: bool) -> int:
    """`--sweep`: each shape at each size, a table or one JSON object."""
    note = sys.stderr if as_json else sys.stdout
    rows = []
    for shape in shapes:
        print(f"{shape!r} ...", file=note, flush=True)
        rows.append(sweep(redactor, shape, sizes))
    if as_json:
        print(json.dumps({"sizes": sizes, "load_average": os.getloadavg()[0], "rows": rows}))
    else:
        print_sweep(rows, sizes)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=32768, help="prompt length (32768)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per step (3)")
    parser.add_argument("--only", default="", help="comma-separated shapes (default: all)")
    parser.add_argument("--whole-only", action="store_true",
                        help="time the whole analysis only (not spaCy, each recogniser)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--sweep", action="store_true",
                        help="time the steps before the budget's first check on the SWEEP "
                             "shapes at each of --sizes")
    parser.add_argument("--sizes", default="2000,4000,8000,16000",
                        help="sizes in characters for --sweep (2000,4000,8000,16000)")
    args = parser.parse_args()
    known = SWEEP if args.sweep else SHAPES
    shapes = [s for s in args.only.split(",") if s] or list(known)
    unknown = [s for s in shapes if s not in known]
    try:
        sizes = sorted(int(n) for n in args.sizes.split(",") if n)
    except ValueError:
        sizes = []
    if unknown or args.runs < 1 or args.chars < 1 or not sizes or sizes[0] < 1:
        parser.error(f"--only takes {', '.join(known)}; --runs and --chars at least 1; "
                     "--sizes: comma-separated positive numbers")

    from appliance.config import RedactionSettings, load_policy
    from appliance.redact import Redactor

    note = sys.stderr if args.json else sys.stdout
    settings = load_policy("redaction", RedactionSettings)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        redactor = Redactor(settings, cache_dir=Path(tmp))
        if args.sweep:
            return run_sweep(redactor, shapes, sizes, as_json=args.json)
        for shape in shapes:
            print(f"{shape} ...", file=note, flush=True)
            rows.append({"shape": shape, **measure(redactor, text_of(shape, args.chars),
                                                   args.runs, whole_only=args.whole_only)})
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"chars": args.chars, "runs": args.runs, "load_average": load,
                          "pattern_timeout_s": settings.pattern_timeout_s,
                          "wall_timeout_s": settings.wall_timeout_s, "rows": rows}))
        return 0
    from appliance.redact.budget import WALL_FACTOR

    guard = settings.wall_timeout_s
    print(f"{args.chars:,} characters; load average {load:.2f} on {os.cpu_count()} cores; "
          f"median of {args.runs} runs; pattern_timeout_s {settings.pattern_timeout_s:g}; "
          f"wall-clock guard {f'{guard:g} s (wall_timeout_s)' if guard else f'{WALL_FACTOR:g} x'}")
    print("| shape | whole analysis, s | its CPU, s | spaCy NER, s "
          "| Semtrace's recognisers, s (slowest) | Presidio's, s (slowest) | refused |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if args.whole_only:
            print(f"| {r['shape']} | {r['whole_s']:.3f} | {r['whole_cpu_s']:.3f} | | | "
                  f"| {r['refused_runs']} of {args.runs + 1} |")
            continue
        print(f"| {r['shape']} | {r['whole_s']:.3f} | {r['whole_cpu_s']:.3f} "
              f"| {r['spacy_s']:.3f} "
              f"| {r['ours_total_s']:.3f} ({r['ours_slowest']} {r['ours_slowest_s']:.3f}) "
              f"| {r['presidio_total_s']:.3f} ({r['presidio_slowest']} "
              f"{r['presidio_slowest_s']:.3f}) | {r['refused_runs']} of {args.runs + 1} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
