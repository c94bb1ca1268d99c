"""The phantom QC API's request bodies (kept apart from the records' schemas)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from phase4.monitor.domain.schemas import ClientId, WorldTime

PhantomKind = Literal["flood", "cylinder", "nema-iq"]


class DeviceIn(BaseModel):
    """The scanner the phantom was acquired on (created on first use)."""

    model_config = ConfigDict(extra="forbid")
    manufacturer: str = Field(min_length=1, max_length=100)
    model: str = Field(min_length=1, max_length=100)
    serial: str = Field(min_length=1, max_length=100)
    modality: Literal["PT", "NM"] = "PT"


class PhantomResultIn(BaseModel):
    """One analysed phantom scan (for example from ``phase4 phantom analyze --json``)."""

    model_config = ConfigDict(extra="forbid")
    result_id: ClientId = Field(description="Client-generated id; re-sending it is a no-op.")
    site: str = Field(min_length=1, max_length=64)
    device: DeviceIn
    kind: PhantomKind
    acquired_at: WorldTime
    metrics: dict[str, float] = Field(
        description="Metric name → value, e.g. {'iu_ufov_pct': 2.1, 'du_cfov_pct': 1.4}."
    )
    truth: dict[str, Any] | None = Field(
        None, description="The phantom's known answer (for the AI canary), e.g. its spheres."
    )
    ai_outputs: dict[str, Any] | None = Field(
        None, description="What the deployed AI said about this phantom series (the canary)."
    )

    @field_validator("metrics")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("at least one metric is needed")
        bad = sorted(k for k, x in v.items() if not math.isfinite(x))
        if bad:
            raise ValueError(f"metrics must be finite numbers: {bad}")
        long = sorted(k for k in v if not 0 < len(k) <= 64 or k.startswith("_"))
        if long:
            raise ValueError(f"metric names must be 1-64 characters, not starting with _: {long}")
        return v


class PhantomBatch(BaseModel):
    results: list[Any] = Field(description="Phantom results, validated one by one.")


class ToleranceIn(BaseModel):
    """A new version of one metric's tolerance and action levels."""

    model_config = ConfigDict(extra="forbid")
    kind: PhantomKind
    metric: str = Field(min_length=1, max_length=64)
    device_id: int | None = Field(None, description="None: the default for every device.")
    lower_action: float | None = None
    lower_tolerance: float | None = None
    upper_tolerance: float | None = None
    upper_action: float | None = None
    unit: str | None = Field(None, max_length=32)
    reason: str = Field(min_length=1, max_length=2000)


class SignOffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=2000)
