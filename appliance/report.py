"""The signed retention report for compliance officers: build, render, check offline.

The signature covers the canonical JSON of the report body. Markdown and HTML
renderings carry that JSON and its signature inside, so `check_report`
verifies any of the three formats and that the rendering matches the body.
"""

from __future__ import annotations

import html
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance import __version__
from appliance.audit import AuditLog, verify_chain
from appliance.config import RetentionSettings
from appliance.keys import AuditSigner, Keyring, verify_signature
from appliance.releases import TREND_DAYS
from appliance.retention import rules_for
from appliance.store import Store
from appliance.words import plural

CLASSES = ("prompts", "vectors", "vault", "threads")


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _first(store: Store, sql: str, params: tuple[Any, ...]) -> float | None:
    row = store.db.execute(sql, params).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _oldest(store: Store, tenant: str, held: frozenset[str] | None
            ) -> dict[str, tuple[float | None, float | None]]:
    """Per class, the oldest data (time) the policy governs and the oldest a legal hold
    keeps. `held`: the tenant's held user pseudonyms, None when the whole tenant is held."""
    classes = {
        "prompts": ("SELECT min(ts) FROM records WHERE tenant=?", "user"),
        "vault": ("SELECT min(r.ts) FROM vault v JOIN records r ON r.id = v.record_id "
                  "WHERE r.tenant=?", "r.user"),
        "threads": ("SELECT min(first_ts) FROM threads WHERE tenant=?", "user"),
    }
    out: dict[str, tuple[float | None, float | None]] = {}
    for cls, (sql, user) in classes.items():
        if held is None:  # the whole tenant is on hold
            out[cls] = (None, _first(store, sql, (tenant,)))
        elif not held:
            out[cls] = (_first(store, sql, (tenant,)), None)
        else:
            marks = ",".join("?" * len(held))
            out[cls] = (_first(store, f"{sql} AND {user} NOT IN ({marks})", (tenant, *held)),
                        _first(store, f"{sql} AND {user} IN ({marks})", (tenant, *held)))
    out["vectors"] = out["prompts"]
    out["shredded"] = (_first(store, "SELECT min(destroyed_at) FROM buckets WHERE tenant=? AND "
                              "destroyed_at IS NOT NULL", (tenant,)), None)
    return {cls: out[cls] for cls in (*CLASSES, "shredded")}


# What is kept once a bucket is shredded, and for how long (stated in every report).
AFTER_SHREDDING = [
    "Shredded bucket rows: id, tenant, time and reason of destruction; their user "
    "pseudonym and day are removed one day after the shred, the rows at aggregates_days.",
    "Topics: ids and merge links only; the shred withdraws the labels, phrases and counts "
    "of every topic its prompts were in (the service publishes them again from the "
    "threads left), and they are removed when no live thread belongs to the topic, or "
    "none was active within aggregates_days.",
    "Daily privacy releases: noisy, k-suppressed figures per topic or model (ids, no "
    "words, no user); one made before a shred still counts the shredded threads in its "
    f"noise. Kept {TREND_DAYS} days for the topics trend, or aggregates_days if shorter.",
    "Audit entries: per shredded bucket its id, tenant, class and counts (the day for "
    "retention, not for erasure); per erasure the user pseudonym and counts.",
]


def _holdings(store: Store, settings: RetentionSettings, now: datetime,
              holds: dict[str, frozenset[str] | None]) -> list[dict[str, Any]]:
    """Oldest data per tenant and class against its limit. Data a legal hold keeps is not
    out of policy: it is stated apart (`held_oldest`), and `within_policy` judges the rest."""
    out = []
    tenants = [r[0] for r in store.db.execute("SELECT DISTINCT tenant FROM buckets ORDER BY 1")]
    for tenant in tenants:
        rules = rules_for(settings, tenant)
        limits = {"prompts": rules.prompts_days, "vectors": rules.prompts_days,
                  "vault": min(rules.vault_days, rules.prompts_days),
                  "threads": rules.prompts_days,
                  "shredded": rules.aggregates_days}
        held = holds.get(tenant, frozenset())
        for cls, (oldest, held_oldest) in _oldest(store, tenant, held).items():
            age = None if oldest is None else (now.timestamp() - oldest) / 86400
            # a bucket is shredded once its whole UTC day has aged past the limit
            out.append({"tenant": tenant, "class": cls, "oldest": _iso(oldest),
                        "age_days": None if age is None else round(age, 2),
                        "limit_days": limits[cls],
                        "within_policy": age is None or age <= limits[cls] + 1,
                        "held_oldest": _iso(held_oldest)})
    return out


def _held_users(settings: RetentionSettings, pseudonym: Callable[[str, str], str] | None
                ) -> dict[str, frozenset[str] | None]:
    """Per tenant with a legal hold, its held users' pseudonyms (None: the whole tenant). A
    hold by user id needs `pseudonym`; without it that user's data is judged as any other."""
    out: dict[str, frozenset[str] | None] = {}
    for h in settings.legal_holds:
        if h.pseudonym is None and h.user_id is None:
            out[h.tenant] = None
            continue
        user = h.pseudonym if h.pseudonym is not None else \
            pseudonym(h.tenant, h.user_id) if pseudonym and h.user_id else None
        if user is not None and (h.tenant not in out or out[h.tenant] is not None):
            out[h.tenant] = (out.get(h.tenant) or frozenset()) | {user}
    return out


def _self_check(store: Store, sample: int = 25) -> dict[str, Any]:
    ids = [r[0] for r in store.db.execute(
        "SELECT id FROM buckets WHERE destroyed_at IS NOT NULL ORDER BY id")]
    picked = random.Random(len(ids)).sample(ids, min(sample, len(ids)))
    failures = []
    for bid in picked:
        rows = store.db.execute("SELECT count(*) FROM records WHERE bucket_id=?",
                                (bid,)).fetchone()[0]
        store._deks.pop(bid, None)  # force a fresh attempt to unwrap from the key store
        if store.key_exists(bid) or store._dek(bid) is not None or rows:
            failures.append(bid)
    return {"sampled_buckets": len(picked), "still_decryptable": failures,
            "passed": not failures}


def _holds(settings: RetentionSettings,
           pseudonym: Callable[[str, str], str] | None) -> list[dict[str, Any]]:
    """The legal holds as the report states them: a held user by pseudonym, as the audit
    entries name users (the policy file's raw user id stays out of the report)."""
    return [{"tenant": h.tenant, "reason": h.stated_reason,
             "user": h.pseudonym if h.pseudonym is not None else None if h.user_id is None
             else pseudonym(h.tenant, h.user_id) if pseudonym else "(one user)"}
            for h in settings.legal_holds]


def _idle(store: Store, holds: list[dict[str, Any]]) -> list[int]:
    """The positions of the holds that match no live data: a tenant or user id not written
    as the gateway sends it holds nothing, which the report's reader must not miss."""
    idle = []
    for i, h in enumerate(holds):
        if h["user"] == "(one user)":  # not resolved without the pseudonym key
            continue
        sql = "SELECT 1 FROM buckets WHERE tenant=? AND destroyed_at IS NULL"
        params = [h["tenant"]] + ([h["user"]] if h["user"] else [])
        if store.db.execute(sql + (" AND user=?" if h["user"] else "") + " LIMIT 1",
                            params).fetchone() is None:
            idle.append(i)
    return idle


def build_report(store: Store, audit: AuditLog, settings: RetentionSettings, *,
                 since: datetime | None = None, now: datetime | None = None,
                 pseudonym: Callable[[str, str], str] | None = None) -> dict[str, Any]:
    """The report body (unsigned); `pseudonym` names held users as the audit log does."""
    now = now or datetime.now(UTC)
    holds = _holds(settings, pseudonym)
    since_ts = since.timestamp() if since else 0.0
    events = [e for e in audit.entries(events=("shred", "erase", "legal_hold_skip",
                                               "retention_run")) if e.ts >= since_ts]
    chain = verify_chain(store.db, store.keys_db)
    return {
        "kind": "semtrace-retention-report", "version": 4, "semtrace": __version__,
        "generated_at": now.isoformat(), "period_from": since.isoformat() if since else None,
        "policy": {**settings.model_dump(mode="json", exclude={"legal_holds"}),
                   "legal_holds": holds},
        "legal_holds": holds,
        "idle_holds": _idle(store, holds),
        "holdings": _holdings(store, settings, now, _held_users(settings, pseudonym)),
        "kept_after_shredding": AFTER_SHREDDING,
        "shredded": [{"at": _iso(e.ts), **e.details} for e in events if e.event == "shred"],
        "erasures": [{"at": _iso(e.ts), "event": e.event, **e.details} for e in events
                     if e.event in ("erase", "legal_hold_skip")],
        "retention_runs": sum(1 for e in events if e.event == "retention_run"),
        "audit_chain": {"ok": chain.ok, "entries": chain.entries,
                        "checkpoints": chain.checkpoints, "problem": chain.problem},
        "self_check": _self_check(store),
    }


def sign_report(body: dict[str, Any], signer: AuditSigner) -> dict[str, Any]:
    return {"report": body, "signature": {"alg": "Ed25519", "key_id": signer.key_id(),
                                          "public_key": signer.public_key_b64(),
                                          "value": signer.sign(canonical(body))}}


@dataclass(frozen=True)
class IssuedReport:
    """A rendered signed report and what it found wrong (None: nothing)."""

    text: str
    problem: str | None


def _found_wrong(body: dict[str, Any]) -> str | None:
    """What the report states that its issuer must not miss: a chain that does not verify,
    shredded buckets still decryptable (the report says BROKEN / FAILED, in its body)."""
    chain, check = body["audit_chain"], body["self_check"]
    wrong = [] if chain["ok"] else [f"the audit log does not verify ({chain['problem']}): "
                                    "the report says its chain is BROKEN"]
    if not check["passed"]:
        wrong.append(f"its self-check found "
                     f"{plural(len(check['still_decryptable']), 'shredded bucket')} still "
                     "decryptable: the report says FAILED")
    return "; ".join(wrong) or None


def issue_signed(store: Store, keyring: Keyring, settings: RetentionSettings, *, fmt: str,
                 since: datetime | None = None, via: str = "cli") -> IssuedReport:
    """Build, sign and render the report, and record its issue in the audit log."""
    log = AuditLog(store.db, keyring.audit_signer(), anchor=store.keys_db)
    body = build_report(store, log, settings, since=since, pseudonym=keyring.pseudonym)
    text = render(sign_report(body, keyring.audit_signer()), fmt)
    log.append("report", {"format": fmt, "chain_ok": body["audit_chain"]["ok"], "via": via})
    return IssuedReport(text, _found_wrong(body))


def issue_report(store: Store, keyring: Keyring, settings: RetentionSettings, *, fmt: str,
                 since: datetime | None = None, via: str = "cli") -> str:
    """The rendered signed report (`issue_signed`'s text)."""
    return issue_signed(store, keyring, settings, fmt=fmt, since=since, via=via).text


MARK_OPEN, MARK_CLOSE = "<!-- SEMTRACE-SIGNED-REPORT ", " END-SEMTRACE-SIGNED-REPORT -->"


def _payload(signed: dict[str, Any]) -> str:
    """The signed JSON as embedded in md/HTML: `<`, `>` and `&` as \\u escapes, so no
    tenant name can close the comment (`-->`), open a tag, or forge the marker."""
    raw = json.dumps(signed, sort_keys=True)
    return raw.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _plain(value: Any) -> str:
    """A value on one line of a table or list (newlines would end the row)."""
    return " ".join(str(value).split()) if value is not None else "-"


def _md(value: Any) -> str:
    """A value as Markdown text: no HTML (a viewer would run it), no table breaks."""
    return html.escape(_plain(value)).replace("|", "\\|").replace("*", "\\*") \
        .replace("_", "\\_").replace("`", "\\`").replace("[", "\\[")


def _body(signed: dict[str, Any], e: Any) -> list[str]:
    """The readable lines of the report; `e` escapes every value that came from data."""
    r = signed["report"]
    lines = ["# Semtrace retention report", "",
             f"Generated {e(r['generated_at'])} (Semtrace {e(r['semtrace'])}).", "",
             # what the counts below cover; earlier reports did not say it (rendered as signed)
             *([f"Period: from {e(r['period_from'])} to the report's generation."
                if r.get("period_from") else "Period: the whole audit log.", ""]
               if r.get("version", 1) >= 3 else []),
             f"Audit chain: **{'intact' if r['audit_chain']['ok'] else 'BROKEN'}** "
             f"({r['audit_chain']['entries']} entries).", "",
             "Self-check of shredded buckets: "
             f"**{'passed' if r['self_check']['passed'] else 'FAILED'}**"
             f" ({r['self_check']['sampled_buckets']} sampled).", "",
             "## Oldest data held vs policy", ""]
    # reports issued before legal holds were stated apart render as they were signed
    held = any("held_oldest" in h for h in r["holdings"])
    lines += (["| tenant | class | oldest | age (days) | limit (days) | within policy | "
               "oldest kept by a legal hold |", "|---|---|---|---|---|---|---|"] if held else
              ["| tenant | class | oldest | age (days) | limit (days) | within policy |",
               "|---|---|---|---|---|---|"])
    for h in r["holdings"]:
        lines.append(f"| {e(h['tenant'])} | {e(h['class'])} | {e(h['oldest'])} | "
                     f"{e(h['age_days'])} | {e(h['limit_days'])} | "
                     f"{'yes' if h['within_policy'] else 'NO'} |"
                     + (f" {e(h.get('held_oldest'))} |" if held else ""))
    lines += ["", "## Kept after shredding", ""]
    lines += [f"- {e(line)}" for line in r.get("kept_after_shredding", [])]
    lines += ["", f"## Buckets shredded ({len(r['shredded'])})", ""]
    lines += [f"- {e(s['at'])}: {e(s['tenant'])} bucket {e(s['bucket'])}"
              + (f" of {e(s['day'])}" if s.get("day") else "")
              + f" ({e(s['class'])}, {e(s.get('records', s.get('entries', 0)))}, "
              f"{e(s['reason'])})"
              for s in r["shredded"]]
    lines += ["", f"## Erasure requests ({len(r['erasures'])})", ""]
    # reports of version 1 (no counts on these lines) render as they were signed
    lines += [_erasure(x, e, words=r.get("version", 1) >= 4) if r.get("version", 1) >= 2 else
              f"- {e(x['at'])}: {e(x['event'])} {e(x['tenant'])}/{e(x['user'])}"
              + (f", completed {e(x['completed_at'])}" if x.get("completed_at") else "")
              for x in r["erasures"]]
    lines += ["", f"## Legal holds ({len(r['legal_holds'])})", ""]
    idle = set(r.get("idle_holds", ()))  # absent from reports issued before it was stated
    lines += [f"- {e(h['tenant'])}/{e(h['user'] or '*')}: {e(h['reason'])}"
              + (" (matches no stored data: it holds nothing)" if i in idle else "")
              for i, h in enumerate(r["legal_holds"])]
    lines += ["", "## Signature", "", f"Ed25519 key `{e(signed['signature']['key_id'])}`. "
              "Verify with `semtrace audit check-report FILE`.", ""]
    return lines


def _count(n: Any, word: str, e: Any, words: bool) -> str:
    """`1 record`, `8 records`; reports before version 4 said `8 record(s)` and render as
    they were signed (their check re-renders them byte for byte)."""
    if not words or not isinstance(n, int):
        return f"{e(n)} {word}(s)"
    return e(plural(n, word))


def _erasure(x: dict[str, Any], e: Any, *, words: bool) -> str:
    """One erasure request as the officer proves it: what was erased (or that a hold kept
    the user), under which reason, and when it completed; an earlier line read the same
    for 8 records erased and for none held."""
    line = f"- {e(x['at'])}: {e(x['tenant'])}/{e(x['user'])}"
    if x["event"] == "legal_hold_skip":
        return line + ": kept by a legal hold, nothing erased" + (
            f" (reason {e(x['reason'])})" if x.get("reason") else "")
    buckets, records = x.get("buckets", 0), x.get("records", 0)
    line += (f": erased {_count(records, 'record', e, words)} in "
             f"{_count(buckets, 'bucket', e, words)}" if buckets
             else ": 0 records (none stored, or all already shredded)")
    if x.get("unattributable_buckets"):
        line += (f"; NOT complete: {_count(x['unattributable_buckets'], 'bucket', e, words)} "
                 "written before a key rotation could not be attributed")
    if x.get("reason"):
        line += f" (reason {e(x['reason'])})"
    return line + (f", completed {e(x['completed_at'])}" if x.get("completed_at") else "")


def render_markdown(signed: dict[str, Any]) -> str:
    return "\n".join([*_body(signed, _md), MARK_OPEN + _payload(signed) + MARK_CLOSE, ""])


def render_html(signed: dict[str, Any]) -> str:
    body = "\n".join([*_body(signed, _plain), ""])
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Semtrace retention report"
            "</title></head><body><pre>" + html.escape(body) + "</pre>\n"
            + MARK_OPEN + _payload(signed) + MARK_CLOSE + "\n</body></html>\n")


def render(signed: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(signed, sort_keys=True, indent=1) + "\n"
    return render_markdown(signed) if fmt == "md" else render_html(signed)


def _embedded(text: str) -> str | None:
    """The payload between the last marker and its end (the payload cannot hold either)."""
    start = text.rfind(MARK_OPEN)
    if start < 0:
        return None
    end = text.find(MARK_CLOSE, start)
    return None if end < 0 else text[start + len(MARK_OPEN):end]


@dataclass(frozen=True)
class ReportCheck:
    ok: bool
    reason: str
    key_id: str | None = None


def check_report(text: str, *, trusted_keys: dict[str, str] | None = None,
                 trusted_by: str = "a key this appliance holds") -> ReportCheck:
    """Verify a report file's signature and that its rendering matches the signed body.

    Args:
        trusted_keys: key id -> public key that may have signed it; None checks integrity
            only, and the reason says that its signer was not checked.
        trusted_by: where the trusted keys came from, as the reason names them.
    """
    try:
        signed = json.loads(text)
        fmt = "json"
    except ValueError:
        payload = _embedded(text)
        if payload is None:
            return ReportCheck(False, "The file holds no signed Semtrace report.")
        try:
            signed = json.loads(payload)
        except ValueError:
            return ReportCheck(False, "The signed payload is damaged.")
        fmt = "html" if text.lstrip().lower().startswith("<!doctype html") else "md"
    try:
        body, sig = signed["report"], signed["signature"]
        key_id, public, value = sig["key_id"], sig["public_key"], sig["value"]
    except (KeyError, TypeError):
        return ReportCheck(False, "The report lacks a signature.")
    if trusted_keys is not None and trusted_keys.get(key_id) != public:
        return ReportCheck(False, f"The report is signed by a key this appliance does not know "
                           f"(key {key_id} is not {trusted_by}): it is not proven to come "
                           "from this appliance" + (
                               "; a `semtrace keys rotate` of the appliance changes its "
                               "signing key (the audit log's key_rotation entry names both "
                               "keys): if one was made since this key was saved, check with "
                               "the `semtrace audit public-key` printed after it"
                               if trusted_by.startswith("the key in") else "") + ".", key_id)
    if not verify_signature(public, canonical(body), value):
        return ReportCheck(False, "The signature does not match the report's content.", key_id)
    if render(signed, fmt) != text:
        return ReportCheck(False, "The readable part of the report was changed.", key_id)
    if trusted_keys is None:  # what was not checked is said in the same sentence as 'intact'
        return ReportCheck(True, f"The report is intact (it matches the signature of key "
                           f"{key_id} it carries), but its signer was NOT checked: no trusted "
                           "key was given (--public-key or --data-dir), and anyone can sign a "
                           "report with a key of their own.", key_id)
    return ReportCheck(True, f"The report is intact and signed by {trusted_by} (key "
                       f"{key_id}).", key_id)
