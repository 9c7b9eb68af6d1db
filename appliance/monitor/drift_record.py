"""The JSON record of a drift report, apart from the monitor so that `appliance drift compute`
(which needs no store) imports neither SQLModel nor the tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, model_serializer

if TYPE_CHECKING:
    import kernels


class DriftReportPublic(BaseModel):
    """`appliance drift compute --json`: a `kernels.DriftReport` as its JSON document.

    ``features`` maps each column to its kind, verdict, missing share and statistics (which
    ones depends on ``--stats`` and the column's kind); ``multivariate`` appears only when PCA
    was computed.
    """

    rows: dict[str, int]
    features: dict[str, dict[str, Any]]
    drifted_share: float | None
    dataset_drifted: bool
    multivariate: dict[str, dict[str, Any]] | None = None

    # No return annotation: pydantic would take it for the record's serialized shape, and the
    # JSON schema (the golden file of `drift compute --json`) would be a bare "object".
    @model_serializer(mode="wrap")
    def _without_absent_multivariate(self, handler: Any):
        out = handler(self)
        if out.get("multivariate") is None:
            out.pop("multivariate", None)
        return out

    @classmethod
    def of(cls, report: kernels.DriftReport) -> DriftReportPublic:
        return cls.model_validate(report.to_dict())
