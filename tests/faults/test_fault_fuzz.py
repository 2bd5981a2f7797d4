"""A protocol fuzzer over frames (short here; bench/faults.py runs it long): every frame
gets a well-formed reply, garbage never an `internal` error, and the service stays up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import InProcess, check_reply, frames
from hypothesis import HealthCheck, given, settings


def test_fuzzed_frames_get_client_errors_and_the_service_stays_up(
        pipeline: Any, tmp_path: Path) -> None:
    svc = InProcess(pipeline, tmp_path / "fuzz.sock")
    try:
        @settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(frames())
        def one(frame: bytes) -> None:
            check_reply(frame, svc.answer(frame))

        one()
        assert svc.answer(b'{"v":1,"op":"ping"}')["ok"]
        assert svc.service.counters["errors"] == 0
    finally:
        svc.close()
