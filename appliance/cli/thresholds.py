"""`semtrace thresholds`: each tenant's link threshold, and the tally it rests on.

The policy's `link_threshold`, the one calibrated from the tenant's own
history-linked traffic (appliance/link/calibrate.py), or the one the operator
pinned (`[calibration.pinned]`). Reads the store directly (passphrase or key);
operators only (the `service` permission).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.cli import credential_options, data_dir_option, emit_json, open_read, role_option


@click.command()
@data_dir_option
@credential_options
@role_option
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def thresholds(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
               role: str | None, tenant: str | None, as_json: bool) -> None:
    """Each tenant's link threshold: the policy's, calibrated from its history-linked
    traffic, or pinned by the operator, with the decisions tallied and the right decisions
    gained."""
    from appliance.link import calibrate
    from appliance.reads import check_tenant
    from appliance.roles import require, sees
    from appliance.thresholds import TenantThresholds

    rt = open_read(data_dir, passphrase_file, key_file, "thresholds")
    try:
        name = require(rt.policies.access, role or "operator", "service", tenant=tenant)
        s = rt.policies.correlation
        if tenant is not None and tenant not in s.calibration.pinned:
            # a typo ("Acme") would show the policy's threshold as if it were that tenant's
            check_tenant(rt.store, rt.policies, tenant)
        tallies = rt.store.link_tallies()
        known = TenantThresholds(s, tallies)
        known_names = sorted({*tallies, *s.calibration.pinned})
        names = [tenant] if tenant else [t for t in known_names
                                         if sees(rt.policies.access, name, t)]
        rows: list[dict[str, Any]] = []
        for t in names:
            c, tally = known.choice(t), known.tally(t)
            rows.append({"tenant": t, "threshold": c.threshold, "source": c.source,
                         "decisions": c.decisions, "attach": round(sum(tally.attach)),
                         "new": round(sum(tally.new)), "gain": c.gain, "reason": c.reason,
                         "policy_threshold": s.link_threshold,
                         "calibration": s.calibration.enabled,
                         "min_decisions": s.calibration.min_decisions})
    finally:
        rt.close()
    if as_json:  # the policy's facts too, as the text's first line gives them
        emit_json({"policy_threshold": s.link_threshold, "calibration": s.calibration.enabled,
                   "min_decisions": s.calibration.min_decisions,
                   "min_each_side": s.calibration.min_each_side,
                   "shrink_continuations": s.calibration.shrink_continuations,
                   "shrink_new": s.calibration.shrink_new,
                   "bounds": list(calibrate.BOUNDS),
                   "tenants": rows})
        return
    lo, hi = calibrate.BOUNDS
    side = s.calibration.min_each_side
    state = (f"on, from {s.calibration.min_decisions} decisions with {side} continuations "
             f"and {side} new conversations, within {lo}-{hi}, rising "
             f"{_moved(s.calibration.shrink_continuations)}, falling "
             f"{_moved(s.calibration.shrink_new)}"
             if s.calibration.enabled else "off")
    click.echo(f"policy link_threshold {s.link_threshold}; calibration {state}")
    if not rows:
        click.echo("No tenant has history-linked traffic or a pinned threshold yet.")
    for r in rows:
        click.echo(f"{r['tenant']:<16} {r['threshold']:>5} {r['source']:<10} "
                   f"{r['decisions']:>6} decisions ({r['attach']} continue, {r['new']} new)"
                   + (f", +{r['gain']} right" if r["source"] == "calibrated" else ""))
        if r["reason"]:
            click.echo(f"{'':<16} {r['reason']}")


def _moved(shrink: float) -> str:
    """How far the threshold moves toward the tally's best, as docs/linking.md says it
    ('m/(m+0)' read as a formula to work out where it means all the way)."""
    return "all the way" if shrink == 0 else f"m/(m+{shrink:g}) of the way"


COMMANDS = [thresholds]
