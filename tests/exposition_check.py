"""A strict reading of a /metrics exposition, as Prometheus reads it (there is no promtool
here): prometheus_client's text parser for the text format (0.0.4) and its OpenMetrics
parser, which refuses a second HELP or TYPE, a family split in two and a missing `# EOF`,
for the format a scraper negotiates; and, line by line, what those parsers let through and
Prometheus refuses: an escape other than \\\\, \\" and \\n in a label value (\\\\ and \\n
in HELP), a sample outside its family's block, the same series twice, a value Go cannot read.
`check_text` and `check_openmetrics` raise AssertionError naming the line."""

from __future__ import annotations

import re

from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*,?)?\}})? (\S+)(?: (-?[\d.]+))?$")
GO_FLOAT = re.compile(r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|NaN)$")


class _Format:
    """The text format (0.0.4) or OpenMetrics 1.0: its HELP escapes, types and suffixes."""

    def __init__(self, *, openmetrics: bool) -> None:
        escapes = r'[\\n"]' if openmetrics else r"[\\n]"
        self.help = re.compile(rf"^# HELP ({NAME}) ((?:[^\\\n]|\\{escapes})*)$")
        types = ("counter|gauge|histogram|summary|info|stateset|gaugehistogram|unknown"
                 if openmetrics else "counter|gauge|histogram|summary|untyped")
        self.type = re.compile(rf"^# TYPE ({NAME}) ({types})$")
        self.unit = re.compile(rf"^# UNIT ({NAME}) ([a-zA-Z0-9_:]*)$") if openmetrics else None
        self.suffixes = {"histogram": ("_bucket", "_sum", "_count", "_created"),
                         "summary": ("_sum", "_count", "", "_created"),
                         "counter": ("_total", "_created") if openmetrics else ("", "_total"),
                         "info": ("_info",), "stateset": ("",),
                         "gaugehistogram": ("_bucket", "_gsum", "_gcount")}


def _lines(text: str, fmt: _Format) -> None:
    """What Prometheus's own parser refuses and prometheus_client's lets through."""
    meta: dict[str, set[str]] = {"HELP": set(), "TYPE": set(), "UNIT": set()}
    typed: dict[str, str] = {}
    closed: set[str] = set()  # families whose block has ended
    current = ""
    series: set[tuple[str, tuple[str, ...]]] = set()
    for n, line in enumerate(text.split("\n")[:-1], 1):  # the last line ends with "\n" too
        where = f"line {n}: {line!r}"
        kind = line[2:6] if line[:7] in ("# HELP ", "# TYPE ", "# UNIT ") else ""
        if kind:
            pattern = {"HELP": fmt.help, "TYPE": fmt.type, "UNIT": fmt.unit}[kind]
            found = pattern.match(line) if pattern else None
            assert found, f"malformed or badly escaped {kind} at {where}"
            name = found.group(1)
            assert name not in meta[kind], f"a second {kind} for {name} at {where}"
            assert name not in closed, f"{name} again after other families at {where}"
            if current and current != name:
                closed.add(current)
            current = name
            meta[kind].add(name)
            if kind == "TYPE":
                typed[name] = found.group(2)
            continue
        if line.startswith("#") or not line.strip():
            continue
        found = SAMPLE.match(line)
        assert found, f"malformed sample or label escape at {where}"
        name, labels, value = found.group(1), found.group(2) or "", found.group(3)
        assert GO_FLOAT.match(value), f"a value Prometheus cannot read at {where}"
        suffixes = fmt.suffixes.get(typed.get(current, ""), ("",))
        if not (current and name.startswith(current) and name.removeprefix(current)
                in suffixes):  # an untyped family of its own, which must be new
            assert name not in closed and name not in typed, \
                f"a sample outside its family's block at {where}"
            closed.add(current)
            current = name
        key = (name, tuple(sorted(re.findall(LABEL, labels))))
        assert key not in series, f"the same series twice at {where}"
        series.add(key)
    assert text.endswith("\n"), "the exposition does not end with a newline"


def check_text(text: str) -> dict[str, Metric]:
    """The families of a text-format (0.0.4) exposition, read strictly."""
    _lines(text, _Format(openmetrics=False))
    families = list(text_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), f"a family given twice: {names}"
    return {f.name: f for f in families}


def check_openmetrics(text: str) -> dict[str, Metric]:
    """The families of an OpenMetrics exposition, read strictly (OpenMetrics' own parser)."""
    assert text.endswith("# EOF\n"), "the OpenMetrics exposition does not end with # EOF"
    _lines(text.removesuffix("# EOF\n"), _Format(openmetrics=True))
    return {f.name: f for f in openmetrics_families(text)}
