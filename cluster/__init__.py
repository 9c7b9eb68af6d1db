"""Everything that runs on Ray: runtime, training, serving.

Ray reads its auth mode when it is first imported, so it is set here, before any module of this
package imports Ray: forced, whatever the environment says (RAY_AUTH_MODE=disabled would open
the appliance's Ray to anyone who reaches it). The token itself is handed over by
`cluster.runtime.ensure_ray`.
"""

import os as _os

_os.environ["RAY_AUTH_MODE"] = "token"
_os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
