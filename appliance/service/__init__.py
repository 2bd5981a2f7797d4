"""The ingest service: asyncio Unix-socket server in front of the pipeline.

One process; asyncio on the main thread for I/O; redaction, embedding and all
store access in ONE worker thread (llama.cpp and SQLite are used by one thread
at a time). Concurrent requests are batched into one redaction/embedding pass
and one transaction (group commit); a reply with ok=true is sent only after
commit (sync mode) or on enqueue (async mode). A bounded queue answers `busy`
instead of dropping.
"""

from appliance.lock import LOCK_FILE, DataDirLock
from appliance.service.core import FrontDoor, ServiceObserver
from appliance.service.lifecycle import Service
from appliance.service.peers import Peer, peer_allowed, peer_credentials, supplementary_groups
from appliance.service.reload import LIVE_KEYS, reload_plan
from appliance.service.storage_errors import STORAGE_CODES, storage_error

__all__ = [
    "LIVE_KEYS", "LOCK_FILE", "STORAGE_CODES", "DataDirLock", "FrontDoor", "Peer", "Service",
    "ServiceObserver", "peer_allowed", "peer_credentials", "reload_plan",
    "storage_error", "supplementary_groups",
]
