"""The reply to a batch the store could not commit: full disk, I/O error or internal."""

from __future__ import annotations

import errno

from appliance.protocol import ProtocolError


def storage_error(exc: BaseException, request_id: str | None) -> ProtocolError:
    """The reply to a batch that could not be committed: a full disk and an I/O error are
    said as such (nothing was recorded either way); anything else is `internal`."""
    causes: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(causes) < 8:  # a failed ROLLBACK hides the first error
        causes.append(seen)
        seen = seen.__context__
    text = " ".join(str(c) for c in causes).lower()
    if any(isinstance(c, OSError) for c in causes):
        exc = next(c for c in causes if isinstance(c, OSError))
    if "disk is full" in text or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return ProtocolError("disk_full", "The appliance's disk is full; nothing was "
                             "recorded. Retry once space is freed.", request_id)
    if "disk i/o error" in text or isinstance(exc, OSError):
        return ProtocolError("io_error", "The appliance could not write to its disk; "
                             "nothing was recorded. Retry later.", request_id)
    return ProtocolError("internal", "The request could not be recorded; retry later.",
                         request_id)


STORAGE_CODES = ("disk_full", "io_error")
