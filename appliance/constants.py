"""Constants the CLI's options name in their --help, in a module that imports nothing.

`semtrace --help` builds every command's options; a constant read from the module
that uses it (the store, the analytics, the cluster) loaded that module and its
libraries (NumPy, OpenDP, SQLCipher, pydantic) into every command's start. Those
modules take them from here, so that each has one home.
"""

from __future__ import annotations

DATA_DIR_ENV = "SEMTRACE_DATA_DIR"  # the data dir when --data-dir is not given
KEYRING_FILE = "keyring.json"  # a data dir holds a store when it holds this file

DEFAULT_DAYS = 7  # the `stats` window when --from is not given

WAIT_MAX_S = 86400.0  # the longest `erase --wait`: no command waits for an older answer

AUDIT_EVENTS = ("init", "start", "stop", "shred", "erase", "erase_denied", "reveal",
                "reveal_denied", "policy_change", "key_rotation", "retention_run", "report",
                "legal_hold_skip", "backup", "restore", "erase_forwarded", "subject_access",
                "subject_access_denied", "cluster_export", "cluster_import", "cluster_forget",
                "cluster_reclaim")  # the kinds of audit entry (`audit log --event`)
