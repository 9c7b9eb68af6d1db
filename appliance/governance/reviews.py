"""Periodic model reviews: each model is reviewed by an approver at least every so many days.

How often depends on the model's risk tier (`DEFAULT_INTERVAL_DAYS`) unless an approver set
the model's own interval (`appliance.registry.models.update_model`). A review is due one
interval after the last one, or after the model was created when it was never reviewed. The
monitor's pass raises a "review" alert for an overdue model (`appliance.monitor.review_alerts`)
and resolves it once a review is recorded; the monthly audit report lists overdue reviews.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, SQLModel, col, select

from appliance.errors import InvalidInput, NotFound
from appliance.governance import audit
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.store.models import (
    Alias,
    ModelReview,
    ModelVersion,
    RegisteredModel,
    RiskTier,
    User,
    utcnow,
)

# Days between reviews by risk tier: riskier models are looked at more often.
DEFAULT_INTERVAL_DAYS: dict[str, int] = {
    RiskTier.low.value: 365,
    RiskTier.medium.value: 180,
    RiskTier.high.value: 90,
}
MAX_NOTES = 4000


class ReviewPublic(SQLModel):
    """One recorded review."""

    id: int
    model: str
    reviewer: str
    notes: str
    version: int | None
    reviewed_at: dt.datetime
    next_due_at: dt.datetime


class ReviewStatusPublic(SQLModel):
    """Where a model stands with its periodic review at `as_of`."""

    model: str
    risk_tier: str
    interval_days: int
    last_reviewed_at: dt.datetime | None
    last_reviewer: str | None
    due_at: dt.datetime
    overdue: bool
    days_overdue: int
    as_of: dt.datetime


def check_interval(days: int) -> int:
    """`days` when it is a sensible review interval (1 to 3650 days).

    Raises:
        InvalidInput: out of range.
    """
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise InvalidInput(f"review interval {days!r} must be a whole number of days from 1 "
                           "to 3650")
    return days


def interval_days(model: RegisteredModel) -> int:
    """The model's own review interval, else its risk tier's default."""
    if model.review_interval_days:
        return model.review_interval_days
    return DEFAULT_INTERVAL_DAYS.get(model.risk_tier, DEFAULT_INTERVAL_DAYS["medium"])


def _last(session: Session, model: str) -> ModelReview | None:
    return session.exec(select(ModelReview).where(ModelReview.model_name == model)
                        .order_by(col(ModelReview.reviewed_at).desc(),
                                  col(ModelReview.id).desc())).first()


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive times from columns written before UTCDateTime; they are UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def review_status(session: Session, model: RegisteredModel, now: dt.datetime | None = None
                  ) -> ReviewStatusPublic:
    """When `model`'s next review is due and whether it is overdue at `now` (default now)."""
    now = now or utcnow()
    last = _last(session, model.name)
    days = interval_days(model)
    since = _aware(last.reviewed_at if last else model.created_at)
    due = since + dt.timedelta(days=days)
    late = now - due
    return ReviewStatusPublic(
        model=model.name, risk_tier=model.risk_tier, interval_days=days,
        last_reviewed_at=last.reviewed_at if last else None,
        last_reviewer=last.reviewer if last else None, due_at=due, overdue=late.total_seconds() > 0,
        days_overdue=max(0, late.days), as_of=now)


def overdue(session: Session, now: dt.datetime | None = None) -> list[ReviewStatusPublic]:
    """Every model whose review is overdue at `now` (default now), by name."""
    models = session.exec(select(RegisteredModel).order_by(RegisteredModel.name)).all()
    return [s for s in (review_status(session, m, now) for m in models) if s.overdue]


def to_public(review: ModelReview) -> ReviewPublic:
    return ReviewPublic(id=review.id, model=review.model_name, reviewer=review.reviewer,
                        notes=review.notes, version=review.version,
                        reviewed_at=review.reviewed_at, next_due_at=review.next_due_at)


def history(session: Session, model: str) -> list[ReviewPublic]:
    """`model`'s reviews, oldest first."""
    rows = session.exec(select(ModelReview).where(ModelReview.model_name == model)
                        .order_by(col(ModelReview.reviewed_at), col(ModelReview.id))).all()
    return [to_public(r) for r in rows]


@operation("review")
def record_review(session: Session, user: User, model: str, notes: str,
                  now: dt.datetime | None = None) -> ReviewPublic:
    """Record that `user` reviewed `model` (audited); the next review is due an interval on.

    Args:
        session: an open session; the caller commits.
        user: the reviewer; needs "approve".
        model: the model's name.
        notes: what the review found (1 to `MAX_NOTES` characters).
        now: the review's time (default `utcnow()`).

    Raises:
        PermissionDenied: `user` is not an approver; NotFound: no such model;
        InvalidInput: empty or overlong notes.
    """
    require(user, "approve")
    row = session.get(RegisteredModel, model)
    if row is None:
        raise NotFound(f"no model named {model!r}; list them with `appliance models list`")
    notes = (notes or "").strip()
    if not notes:
        raise InvalidInput("a review needs --notes saying what was reviewed and found")
    if len(notes) > MAX_NOTES:
        raise InvalidInput(f"review notes are {len(notes)} characters; at most {MAX_NOTES}")
    now = now or utcnow()
    champion = session.exec(select(Alias).where(Alias.model_name == row.name,
                                                Alias.alias == "champion")).first()
    version = session.get(ModelVersion, champion.version_id).version if champion else None
    review = ModelReview(model_name=row.name, reviewer=user.name, notes=notes, version=version,
                         reviewed_at=now, next_due_at=now + dt.timedelta(days=interval_days(row)))
    session.add(review)
    session.flush()
    audit.record(session, user.name, "model.reviewed", "model", row.name,
                 {"review": review.id, "version": version, "risk_tier": row.risk_tier,
                  "next_due_at": review.next_due_at.isoformat()})
    return to_public(review)
