"""What this appliance holds and serves right now: the record `appliance status` shows.

The store's counts come through SQLAlchemy Core (`registry.overview`); the local Ray head's
state from `/proc` and, only when a head is recorded and answers, from Ray itself (then joined
to list its Serve applications). So a status of an appliance with no running head imports
neither the ORM nor Ray.
"""

from __future__ import annotations

from pydantic import BaseModel

from appliance.config import Config
from appliance.errors import CheckFailed
from appliance.registry.overview import ServingPublic, store_counts
from appliance.store import get_engine
from appliance.store.database import redact
from cluster import head


class ServeAppPublic(BaseModel):
    """One Serve application on the local head."""

    name: str
    status: str


class HeadStatusPublic(BaseModel):
    """The local Ray head: where it listens, whether it runs, what it serves.

    `applications` is None when it was not asked for or the head does not answer (`error`
    then says why); empty when Serve is not running there.
    """

    address: str | None
    running: bool
    reachable: bool
    processes: int
    applications: list[ServeAppPublic] | None
    error: str | None = None


class StatusPublic(BaseModel):
    """The appliance at a glance: where its home and store are (the store's password masked),
    what the store holds, and its local Ray head."""

    home: str
    db_url: str
    datasets: int
    models: int
    versions: int
    pending_approvals: int
    open_alerts: int
    deployments: list[ServingPublic]
    ray_head: HeadStatusPublic


def head_status(cfg: Config, *, applications: bool = True) -> HeadStatusPublic:
    """The local head's address, processes and, when it answers, Serve applications.

    Args:
        cfg: the appliance configuration.
        applications: join the head (when it answers) to list its Serve applications
            (default True; a few seconds, as Ray is imported and joined).
    """
    address = head.recorded_address(cfg.home)
    if address is None:
        return HeadStatusPublic(address=None, running=False, reachable=False, processes=0,
                                applications=None)
    processes = len(head.head_processes(address))
    reachable = head.reachable(address)
    apps, error = None, None
    if applications and reachable and processes:
        # Deferred: only a running head needs Ray.
        from cluster import runtime

        try:
            apps = [ServeAppPublic(name=name, status=status)
                    for name, status in sorted(runtime.serve_applications(cfg, address).items())]
        except CheckFailed as exc:
            error = str(exc)
    return HeadStatusPublic(address=address, running=processes > 0, reachable=reachable,
                            processes=processes, applications=apps, error=error)


def appliance_status(cfg: Config) -> StatusPublic:
    """What `cfg`'s appliance holds and serves: the store's counts and the local head's state
    (its Serve applications when it answers). Checking the reader's permission is the
    caller's."""
    with get_engine(cfg.db_url).connect() as conn:
        counts = store_counts(conn)
    return StatusPublic(home=str(cfg.home), db_url=redact(cfg.db_url), **dict(counts),
                        ray_head=head_status(cfg))
