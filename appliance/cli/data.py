"""Where `semtrace replay | threads | search | demo | reembed` lived; kept so old imports work.

The commands now live in `replay`, `browse` (threads and search), `demo` and
`reembed`, registered from `COMMAND_MODULES`; this module is not registered.
"""

from appliance.cli.browse import search, threads, threads_list, threads_show
from appliance.cli.demo import DEMO_STREAM, demo
from appliance.cli.reembed import reembed
from appliance.cli.replay import _replay_runtime, replay, run_replay

COMMANDS = [replay, threads, search, demo, reembed]

__all__ = ["COMMANDS", "DEMO_STREAM", "_replay_runtime", "demo", "reembed", "replay",
           "run_replay", "search", "threads", "threads_list", "threads_show"]
