"""Each model's stored monitoring policy: read it resolved, change it (audited)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlmodel import Session, SQLModel

from appliance.errors import ConflictError, InvalidInput, NotFound
from appliance.governance import audit
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.monitor.policy import KEYS, Policy, build, parse_settings
from appliance.names import check_name
from appliance.store.models import MonitorPolicy, RegisteredModel, RiskTier, User, utcnow


@dataclasses.dataclass(frozen=True)
class ResolvedPolicy:
    """A model's effective policy and where each value came from."""

    model: str
    policy: Policy
    sources: dict[str, str]  # key -> "default" | "config" | "model"
    updated_by: str | None = None
    updated_at: Any = None


def effective(session: Session, model: str, config_defaults: dict[str, Any] | None = None,
              *, must_exist: bool = False) -> ResolvedPolicy:
    """The policy of `model`: defaults, then `config_defaults`, then the model's own keys.

    Args:
        session: an open session.
        model: the registered model's name (need not exist: a model without a row gets the
            defaults).
        config_defaults: the validated ``[policy]`` table of the configuration (default none).
        must_exist: NotFound unless `model` is registered (default False).
    """
    check_name("model name", model)
    if must_exist and session.get(RegisteredModel, model) is None:
        raise NotFound(f"no model named {model!r}; list them with `appliance models list`")
    config_defaults = config_defaults or {}
    row = session.get(MonitorPolicy, model)
    own = parse_settings(row.settings, f"stored policy of {model!r}") if row else {}
    sources = {k: "model" if k in own else "config" if k in config_defaults else "default"
               for k in KEYS}
    return ResolvedPolicy(
        model=model, policy=build(config_defaults, own), sources=sources,
        updated_by=row.updated_by if row else None, updated_at=row.updated_at if row else None,
    )


@operation("policy.set")
def set_policy(
    session: Session, user: User, model: str, changes: dict[str, Any],
    reset: tuple[str, ...] | list[str] = (), config_defaults: dict[str, Any] | None = None,
) -> ResolvedPolicy:
    """Change keys of `model`'s policy, and return keys in `reset` to their defaults.

    Needs the "operate" permission. Turning auto_promote on needs the model's risk tier to be
    "low": auto-promotion makes the policy the approver of record, which a model whose changes
    need review must not have. A None value of an optional key (window_rows, window_seconds,
    schedule_seconds, max_rows) means "no limit".

    Raises:
        InvalidInput: an unknown key or a bad value; NotFound: no such model;
        ConflictError: auto_promote for a model that is not low risk.
    """
    require(user, "operate")
    registered = session.get(RegisteredModel, check_name("model name", model))
    if registered is None:
        raise NotFound(f"no model named {model!r}; list them with `appliance models list`")
    if not changes and not reset:
        raise InvalidInput("nothing to change: give at least one policy key")
    unknown = sorted(set(reset) - set(KEYS))
    if unknown:
        raise InvalidInput(f"unknown policy key(s) {unknown}; known keys: {', '.join(KEYS)}")
    row = session.get(MonitorPolicy, model)
    current = dict(row.settings) if row else {}
    checked = parse_settings(changes)
    for key in reset:
        current.pop(key, None)
    for key, value in checked.items():
        current[key] = list(value) if isinstance(value, tuple) else value
    build(config_defaults or {}, parse_settings(current))
    # A config default of auto_promote reaches only low-risk models (see the orchestrator);
    # asking for it on this model is what needs the tier.
    if checked.get("auto_promote") and registered.risk_tier != RiskTier.low.value:
        raise ConflictError(
            f"model {model!r} has risk tier {registered.risk_tier!r}; auto_promote needs "
            "'low' (an approver sets it with `appliance models set --risk-tier low`)"
        )
    if row is None:
        row = MonitorPolicy(model_name=model, settings=current, updated_by=user.name)
    else:
        row.settings, row.updated_by, row.updated_at = current, user.name, utcnow()
    session.add(row)
    session.flush()
    audit.record(session, user.name, "policy.updated", "model", model, {
        "set": {k: (list(v) if isinstance(v, tuple) else v) for k, v in checked.items()},
        "reset": sorted(reset),
    })
    return effective(session, model, config_defaults)


class PolicyPublic(SQLModel):
    """A model's effective policy as the faces show it, with each value's source."""

    model: str
    policy: dict[str, Any]
    sources: dict[str, str]
    updated_by: str | None
    updated_at: dt.datetime | None


def public(resolved: ResolvedPolicy) -> PolicyPublic:
    return PolicyPublic(model=resolved.model, policy=resolved.policy.to_dict(),
                        sources=resolved.sources, updated_by=resolved.updated_by,
                        updated_at=resolved.updated_at)
