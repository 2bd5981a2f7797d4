"""Whether the adapters try the appliance now, and their log lines about its state.

One warning when it stops answering, then a pause (`RETRY_FIRST` seconds, doubling up to
`RETRY_MAX` while it stays down) in which requests are not sent for an answer; one line
when it answers again, with how many requests went unrecorded (`missed`), how many the
bus took meanwhile that no node answered (`queued`: its node records them once back) and
how many tool loop calls the service held past the timeout (`held`: it answers them when
their turn lands) and how many requests were sent whole over a socket and got no reply in
time (`unknown`: a slow service still records them, so they are not counted unrecorded).
Refusals are logged once a minute per code (`QUIET`); a request a cluster node forwarded to
its tenant's owner and got no answer for in time (`unanswered`) is no refusal: it is logged
apart (`semtrace_unanswered`), as queued. See `channel.py`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from appliance.errors import SemtraceError
from appliance.integrations import FORWARDED_UNANSWERED, error_code

RETRY_FIRST = 1.0  # seconds without sending after the appliance stopped answering
RETRY_MAX = 30.0
QUIET = 60.0  # a refusal's warning is repeated at most this often (seconds)


def why(exc: BaseException, timeout: float) -> str | None:
    """What went wrong, in one sentence that names the socket or server and nothing of a
    request: what Semtrace's own clients said (`SemtraceError`: no service listening on the
    socket path, permission denied on it, a reply that is not JSON, ...), or that no reply
    came in time. None for any other exception, whose message may quote data (its type is
    logged)."""
    if isinstance(exc, SemtraceError) and str(exc).strip():
        return str(exc).strip()
    if isinstance(exc, TimeoutError):
        return f"No reply came within the adapter's timeout ({timeout:g} s)."
    return None


class Breaker:
    """Whether to try the appliance now, and the log lines about its state (thread-safe)."""

    def __init__(self, log: logging.Logger, clock: Any = time.monotonic, *,
                 probe: float = 5.0) -> None:
        """`probe`: how long the one request trying a down appliance again has (the
        adapter's timeout); others are not sent meanwhile."""
        self.log, self.clock, self.probe = log, clock, probe
        self._lock = threading.Lock()
        self._until = 0.0  # no request is sent before this time
        self._probing = 0.0  # while down: until when a request is trying it again
        self._pause = RETRY_FIRST
        self._down = False
        self.missed = 0  # requests not sent or not answered since it went down
        self.queued = 0  # requests the bus took since then that no node answered yet
        self.held = 0  # tool loop calls held past the timeout since then: answered later
        self.unknown = 0  # requests sent whole, no reply in time: recorded if it was slow
        self._queued = False  # the bus took the request no node answered (`bus_keeps`)
        self._warned: dict[str, float] = {}  # refusal code -> when last logged
        self._quieted: dict[str, int] = {}  # refusal code -> lines held back since

    def ready(self) -> bool:
        """Whether a request may be sent now; one not sent counts as missed. While the
        appliance is down, one request at a time tries it again once the pause is over:
        the others do not all wait for a service that may still hang."""
        with self._lock:
            now = self.clock()
            if now >= self._until and not (self._down and now < self._probing):
                if self._down:
                    self._probing = now + self.probe
                return True
            self.missed += 1
            return False

    def paused(self) -> bool:
        """Whether a pause began while this request waited to be sent (it then is not)."""
        with self._lock:
            if self.clock() < self._until:
                self.missed += 1
                return True
            return False

    def skipped(self) -> None:
        """A request not sent (the line stayed busy for the whole timeout, or too many were
        waiting to be sent); it pauses nothing."""
        with self._lock:
            self.missed += 1

    def loop_held(self) -> None:
        """A tool loop's call the service (over NATS: the bus, for its node) kept and did
        not answer within the timeout: held until its turn lands, then attached. Not lost,
        and no sign of an outage: it pauses nothing."""
        with self._lock:
            self.held += 1

    def bus_keeps(self) -> bool:
        """Whether, while paused, a request may still be handed to the bus without waiting
        for an answer: the last one was queued there (JetStream keeps it for its node) and
        no node answered in time. The node answers what the bus kept once it is back."""
        with self._lock:
            return self._down and self._queued

    def kept(self) -> None:
        """A request not sent for an answer (`ready` counted it missed) that the bus took."""
        with self._lock:
            self.missed = max(self.missed - 1, 0)
            self.queued += 1

    def failed(self, req: dict[str, Any], exc: BaseException, *,
               counted: bool = False) -> None:
        """The appliance did not answer `req`: warn once, then pause sending. A request the
        bus took (`NoAnswerYet`) is counted as queued, one sent whole whose reply did not
        come in time (`ReplyLate`) as unknown, any other as missed (unless `ready` already
        `counted` it)."""
        queued = bool(getattr(exc, "queued", False))  # `NoAnswerYet`: the bus kept it
        with self._lock:
            first, now = not self._down, self.clock()
            self._down, self._probing, self._queued = True, 0.0, queued
            if queued:
                self.queued += 1
            elif getattr(exc, "sent", False):  # `ReplyLate`: the service has it
                self.unknown += 1
            elif not counted:
                self.missed += 1
            if now < self._until and not first:  # in flight when another failed: paused
                return
            self._until = now + self._pause
            pause, self._pause = self._pause, min(self._pause * 2, RETRY_MAX)
        if first:
            reason = why(exc, self.probe)
            self.log.warning("no semtrace node answered; calls go on, queued on the bus "
                             "unanswered until one does" if queued else
                             "semtrace did not answer; calls go on unrecorded until it does"
                             + (f". {reason}" if reason else ""),
                             extra={"event": "semtrace_unavailable",
                                    "request_id": req.get("request_id"), "op": req.get("op"),
                                    "error": type(exc).__name__, "reason": reason,
                                    "retry_in_s": pause})

    def answered(self, req: dict[str, Any], reply: dict[str, Any]) -> None:
        """A reply came: say once that the appliance is back; pause on `busy`."""
        code = error_code(reply)
        with self._lock:
            back, missed, queued, held = self._down, self.missed, self.queued, self.held
            unknown, self.unknown = self.unknown, 0
            self._down, self.missed, self.queued, self.held = False, 0, 0, 0
            self._pause = RETRY_FIRST
            self._probing, self._queued = 0.0, False
            if code == "busy":
                retry = (reply.get("error") or {}).get("retry_after_ms")
                wait = retry / 1000 if isinstance(retry, int | float) and retry > 0 else 0.05
                self._until = self.clock() + min(wait, RETRY_MAX)
        if back:
            self.log.info("semtrace answers again", extra={
                "event": "semtrace_available", "unrecorded": missed, "queued": queued,
                "held": held, "unknown": unknown})
        if code == FORWARDED_UNANSWERED:  # forwarded to the owner: queued, not refused
            self.quiet_warning(
                "a semtrace cluster node forwarded the request to its tenant's owner and no "
                "answer came in time; it stays queued and is stored once the owner takes it "
                "(unless the node's connection to NATS dropped meanwhile)",
                "semtrace_unanswered", req)
        elif code is not None:
            self.quiet_warning("semtrace refused a request", "semtrace_refused", req,
                               code=code)

    def quiet_warning(self, msg: str, event: str, req: dict[str, Any] | None,
                      **fields: Any) -> None:
        """One warning a minute per (event, fields), with how many were held back."""
        key = repr((event, sorted(fields.items())))
        now = self.clock()
        with self._lock:
            last = self._warned.get(key)
            if last is not None and now - last < QUIET:
                self._quieted[key] = self._quieted.get(key, 0) + 1
                return
            self._warned[key] = now
            held = self._quieted.pop(key, 0)
        self.log.warning(msg, extra={
            "event": event, "request_id": (req or {}).get("request_id"),
            "op": (req or {}).get("op"), **fields, "similar_not_logged": held})
