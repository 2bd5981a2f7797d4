"""The JSON form of the reads' results (`reads.py`): what a stats report is on the wire
and in `semtrace stats --json` (`stats_json`), and, for the clients of the query socket
(the CLI and the TUI with `--socket`), the reports, threads, records and hits read back
from it as the objects the direct path prints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from appliance import analytics
from appliance.privacy import Figure
from appliance.records import Hit, Record, Thread, jsonable


def stats_json(report: analytics.Report[Any], currency: str) -> dict[str, Any]:
    """What `semtrace stats ... --json` prints: figures with their 95 % half-widths."""
    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            out = {k: walk(v) for k, v in x.items()}
            if set(out) == {"value", "noise_scale", "exact"}:
                out["value"] = round(out["value"], 4)
                out["ci95"] = round(Figure(**x).ci95, 4)
            return out
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    data: dict[str, Any] = walk(jsonable(report))
    if report.kind != "models":  # topics merged since a `models --topic` release
        for key in ("uncounted", "topic", "topic_label"):
            data.pop(key, None)
    if report.kind != "incident":
        for key in ("baseline_start", "baseline_end"):
            data.pop(key, None)
    if report.released_at is not None:
        data["release_age_s"] = round(
            (datetime.now(UTC) - report.released_at).total_seconds(), 1)
    return {**data, "currency": currency}


_ROW_TYPES: dict[str, type] = {"positions": analytics.PositionShare,
                               "blocks": analytics.BlockStats, "incident": analytics.Lift}


def _ts(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _value(v: Any) -> Any:
    if isinstance(v, dict) and {"value", "noise_scale", "exact"} <= set(v):
        return Figure(float(v["value"]), float(v["noise_scale"]), bool(v["exact"]))
    if isinstance(v, list):
        return tuple(v)
    return v


def row_from_json(kind: str, data: dict[str, Any]) -> Any:
    """One report row from its JSON form (GroupStats for topics, models and cost)."""
    cls = _ROW_TYPES.get(kind, analytics.GroupStats)
    fields = {k: _value(v) for k, v in data.items() if k != "trend"}
    if "trend" in data:
        fields["trend"] = tuple(analytics.TrendPoint(**p) for p in data["trend"])
    return cls(**fields)


def report_from_json(data: dict[str, Any]) -> analytics.Report[Any]:
    """A stats report as the query socket sent it (for printing it as the CLI does)."""
    start, end = _ts(data["start"]), _ts(data["end"])
    assert start is not None and end is not None
    return analytics.Report(
        kind=data["kind"], tenant=data["tenant"], start=start, end=end, exact=data["exact"],
        epsilon=data["epsilon"], budget_remaining=data["budget_remaining"],
        k_min_users=data["k_min_users"],
        rows=tuple(row_from_json(data["kind"], r) for r in data["rows"]),
        released_at=_ts(data.get("released_at")), cached=bool(data.get("cached")),
        per_user_topics=bool(data.get("per_user_topics")),
        uncounted=tuple(data.get("uncounted", ())), topic=data.get("topic"),
        topic_label=data.get("topic_label"), baseline_start=_ts(data.get("baseline_start")),
        baseline_end=_ts(data.get("baseline_end")), empty=bool(data.get("empty")))


def record_from_json(d: dict[str, Any]) -> Record:
    ts = _ts(d["ts"])
    assert ts is not None
    return Record(**{**d, "ts": ts})


def thread_from_json(d: dict[str, Any]) -> Thread:
    """A thread as the query socket sent it (`jsonable` of a Thread)."""
    first, last = _ts(d["first_ts"]), _ts(d["last_ts"])
    assert first is not None and last is not None
    return Thread(**{**d, "first_ts": first, "last_ts": last, "models": tuple(d["models"]),
                     "records": tuple(record_from_json(r) for r in d["records"])})


def hit_from_json(d: dict[str, Any]) -> Hit:
    ts = _ts(d["ts"])
    assert ts is not None
    return Hit(**{**d, "ts": ts})
