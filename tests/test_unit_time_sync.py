"""The unit starts the service after the host's clock is synchronised, where the host waits
for that: retention shreds by the clock and catches up at start, so a clock set ahead at
boot (a wrong RTC, before NTP steps it back) shredded at once everything due by then."""

from __future__ import annotations

from pathlib import Path

from unit_sandbox import parse_unit

UNIT = Path(__file__).parent.parent / "installer" / "semtrace.service"


def test_the_service_is_ordered_after_time_sync_and_does_not_pull_it_in() -> None:
    unit = parse_unit("semtrace.service", UNIT.read_text()).sections["Unit"]
    after = " ".join(unit.get("After", [])).split()
    assert "time-sync.target" in after and "local-fs.target" in after
    # systemd.special(7): ordered after it, never pulling it in (a host without a clock
    # sync service would otherwise wait for nothing)
    for pull in ("Wants", "Requires", "BindsTo", "Requisite"):
        assert "time-sync.target" not in " ".join(unit.get(pull, [])), pull
