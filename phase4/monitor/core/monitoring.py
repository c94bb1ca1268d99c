"""A deployment's monitoring configuration (``deployment.monitoring``) as a typed contract.

``MonitoringConfig`` states every key the drift engine reads and nothing else: an unknown key
(``studies_per_dya``) is refused with its path instead of being dropped, a stream kind outside
numeric, binary and categorical is refused where the configuration comes in, every number
must be finite and within its bounds, and every string one both databases store. It is
checked where a configuration enters the store (``POST /v1/deployments``,
``phase4 deployment create --monitoring``) and again where detection reads a stored one, since
rows written before the contract existed may not satisfy it
(``phase4.monitor.surveillance.detection`` then stops that deployment alone, with an alert).

The defaults are the drift engine's (``phase4.monitor.drift.streams.MonitorConfig``); a test
keeps the two equal. Reference: docs/CONFIGURATION.md, "A deployment's monitoring
configuration".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from phase4.monitor.core.limits import KEY_CHARS_MAX, check_text
from phase4.monitor.core.problems import problems

StreamKind = Literal["numeric", "binary", "categorical"]
STREAM_KINDS: tuple[str, ...] = get_args(StreamKind)
StreamSource = Literal["record", "feedback"]
# The streams a ``performance`` block adds (phase4.monitor.surveillance.detection).
PERFORMANCE_STREAMS = ("performance.missed", "performance.false_positive", "performance.dice")
# A stream reads one field of a record; its name (the field, and its subgroup) is what an
# alert's ``stream`` column holds, 200 characters.
FIELD_CHARS_MAX = 200
# The smallest reference the detectors are calibrated from (the engine refuses less).
REFERENCE_MIN = 30
# The shortest window of a windowed test: fewer observations have no power.
WINDOW_MIN = 10


def _storable(value: str) -> str:
    """Text both databases store: no NUL (PostgreSQL), no lone surrogate (UTF-8)."""
    try:
        check_text(value, "")
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix(": ")) from None
    return value


Text = Annotated[str, AfterValidator(_storable)]
FieldPath = Annotated[Text, Field(min_length=1, max_length=FIELD_CHARS_MAX)]
OutputKey = Annotated[Text, Field(min_length=1, max_length=KEY_CHARS_MAX)]
Scalar = Annotated[float, Field(allow_inf_nan=False)] | int | bool | Text | None


class _Strict(BaseModel):
    """Refuses keys it does not know and numbers that are not finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class StreamConfig(_Strict):
    """One stream: a field of each record (or of each labelled outcome) to watch."""

    field: FieldPath = Field(
        description="Dotted path into the record: features.<key>, outputs.<key>, error, "
        "inference_error, latency_s (or performance.<metric> with source feedback)."
    )
    kind: StreamKind = Field(
        description="numeric (CUSUM, EWMA, windowed KS), binary (Bernoulli CUSUM) or "
        "categorical (new-category notice, windowed G-test)."
    )
    source: StreamSource = Field(
        "record", description="record: each inference record; feedback: each labelled outcome."
    )
    where: list[tuple[FieldPath, Scalar]] = Field(
        default_factory=list,
        description="A subgroup: only records whose field equals the value, e.g. "
        '[["features.scanner_model", "Discovery MI"]].',
    )
    reference_size: int | None = Field(
        None,
        ge=REFERENCE_MIN,
        description="Observations forming this stream's reference (default: the deployment's).",
    )
    p1: float | None = Field(
        None, gt=0, lt=1, description="Binary streams: the event rate to detect quickly."
    )
    rate_ratio: float = Field(
        2.0, gt=1, description="Binary streams without p1: detect a rise to this many times p0."
    )

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: Any) -> Any:
        if value not in STREAM_KINDS:
            shown = repr(value) if isinstance(value, str) else type(value).__name__
            raise PydanticCustomError(
                "stream_kind",
                "kind must be numeric, binary or categorical, not {shown}",
                {"shown": shown[:60]},
            )
        return value


class PerformanceConfig(_Strict):
    """Labelled performance: physicians' verdicts and ground truth against the AI's call."""

    prediction: OutputKey = Field(
        "positive", description="The output (a boolean) that is the AI's call."
    )
    truth: OutputKey = Field(
        "malignant", description="The key of ground_truth (a boolean) that is the truth."
    )
    score: OutputKey | None = Field(
        None,
        description="The output holding the AI's calibrated score: also estimate sensitivity "
        "and specificity without labels (CBPE).",
    )
    dice: bool = Field(True, description="Also watch the Dice of physicians' edits.")
    reference_size: int = Field(
        100, ge=REFERENCE_MIN, description="Labelled outcomes forming the reference."
    )
    cbpe_reference_size: int = Field(
        300, ge=REFERENCE_MIN, description="Labelled outcomes the CBPE calibration is fitted on."
    )
    cbpe_window: int = Field(
        200, ge=WINDOW_MIN, description="Unlabelled records per CBPE estimate."
    )


class CbpeConfig(_Strict):
    """Performance estimated without labels, set directly (``performance.score`` sets it for
    you, and wins when both are given)."""

    score: FieldPath = Field(description="Dotted path of the score, e.g. outputs.malignancy_score.")
    prediction: FieldPath = Field(description="Dotted path of the call, e.g. outputs.positive.")
    reference_size: int = Field(300, ge=REFERENCE_MIN)
    window: int = Field(200, ge=WINDOW_MIN)


class QuantityConfig(_Strict):
    """How people read one stream (``phase4.monitor.core.quantities``); what is not given comes
    from the stream's field name."""

    label: Annotated[Text, Field(min_length=1, max_length=120)] | None = Field(
        None, description="Display name, lower case unless a name or acronym: 'liver SUVmean'."
    )
    unit: Annotated[Text, Field(max_length=40)] | None = Field(
        None, description="Unit symbol: 'SUV', 'MBq', 's'; '' for a dimensionless quantity."
    )
    unit_note: Annotated[Text, Field(max_length=120)] | None = Field(
        None, description="What the unit is, when the symbol says too little: 'g/mL'."
    )
    relative: bool | None = Field(
        None,
        description="Whether a change reads as a percentage of the reference (ratio scales); "
        "false: stated in the unit (percentages, scores, HU).",
    )


# The subgroup dimensions and the field each reads by default: the deployment's site, the
# scanner model the record names, the patient's sex and age band as the probe recorded them.
SUBGROUP_DIMENSIONS: dict[str, str] = {
    "site": "site",
    "scanner": "features.scanner_model",
    "sex": "features.patient_sex",
    "age_band": "features.patient_age_band",
}
DimensionName = Annotated[Text, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]


class SubgroupsConfig(_Strict):
    """Per-subgroup performance and the disparity monitor (docs/SUBGROUPS.md)."""

    dimensions: dict[DimensionName, FieldPath] = Field(
        default_factory=lambda: dict(SUBGROUP_DIMENSIONS),
        max_length=8,
        description="Dimension name -> the field that holds a record's group: 'site' (the "
        "deployment's site) or a dotted path such as features.patient_age_band.",
    )
    window_days: int = Field(
        90, ge=1, le=3650, description="Days (of acquisition) the subgroup table covers."
    )
    disparity: bool = Field(
        True,
        description="Run the disparity monitor (needs a performance block); it takes one share "
        "of the false-alarm budget.",
    )
    margin: float = Field(
        0.10,
        gt=0,
        le=0.45,
        description="The gap to the rest (in the metric's own scale, 0.10 = 10 points of "
        "sensitivity or specificity) beyond which a group is flagged.",
    )
    min_group_cases: int = Field(
        10,
        ge=1,
        description="Groups with fewer cases in the window are not published on /metrics "
        "(k-anonymity of the exposition).",
    )


class MonitoringConfig(_Strict):
    """What ``deployment.monitoring`` may hold; every key is optional."""

    streams: list[StreamConfig] = Field(
        default_factory=list,
        description="What to watch. Absent or empty: inferred from the first records (every "
        "numeric, boolean and string feature and output, inference_error, latency_s).",
    )
    exclude: list[FieldPath] = Field(
        default_factory=list, description="Fields left out of the inferred streams."
    )
    performance: PerformanceConfig | None = Field(
        None, description="Labelled performance streams; absent, null or {}: off."
    )
    cbpe: CbpeConfig | None = None
    studies_per_day: float = Field(
        20.0, gt=0, description="Expected studies a day: with the budget, each detector's ARL0."
    )
    false_alarms_per_year: float = Field(
        1.0, gt=0, description="The deployment's false-alarm budget, shared by its streams."
    )
    reference_size: int = Field(
        500, ge=REFERENCE_MIN, description="Observations per stream forming its reference."
    )
    cusum_k: float = Field(0.25, gt=0, description="CUSUM reference value, in σ.")
    ewma_lambda: float = Field(0.2, gt=0, le=1, description="EWMA smoothing weight.")
    ks_window: int = Field(50, ge=WINDOW_MIN, description="Observations per windowed KS test.")
    chi_square_window: int = Field(
        100, ge=WINDOW_MIN, description="Observations per windowed G-test (categorical)."
    )
    reference_events_min: int = Field(
        0,
        ge=0,
        description="Events a binary stream's reference waits for before monitoring starts "
        "(0: it starts at reference_size observations).",
    )
    reference_events_target: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Events a binary stream's reference grows toward, in audited steps, from "
        "observations older than a guard lag, never while the stream has an open alert "
        "(0, the default: no growth; growth that stops at alarms over-spends the false-alarm "
        "budget in control, see docs/STATISTICS.md 'Rare events').",
    )
    reference_horizon_days: int = Field(
        90,
        ge=1,
        le=3650,
        description="A stream whose reference will not be complete within this many days, at "
        "the rate studies are acquired, is flagged (deployment page, /metrics, export).",
    )

    subgroups: SubgroupsConfig | None = Field(
        None,
        description="Subgroup performance and the disparity monitor; absent: the subgroup "
        "table with its default dimensions, and no disparity monitor.",
    )
    quantities: dict[FieldPath, QuantityConfig] = Field(
        default_factory=dict,
        description="Display names and units of streams, by stream or field "
        "(e.g. {'features.liver_suvmean': {'label': 'liver SUVmean', 'unit': 'SUV'}}); a "
        "stream not listed is named from its field (phase4/monitor/core/quantities.py).",
    )

    @field_validator("streams", "exclude", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("quantities", mode="before")
    @classmethod
    def _null_is_no_names(cls, value: Any) -> Any:
        return {} if value is None else value

    def quantity_names(self) -> dict[str, dict[str, Any]]:
        """``quantities`` as plain mappings, for ``phase4.monitor.core.quantities.quantity_of``."""
        return {k: v.model_dump(exclude_none=True) for k, v in self.quantities.items()}

    @field_validator("performance", mode="before")
    @classmethod
    def _empty_is_off(cls, value: Any) -> Any:
        return None if value == {} else value

    @model_validator(mode="after")
    def _streams_distinct(self) -> MonitoringConfig:
        seen: set[tuple[str, tuple[tuple[str, Any], ...]]] = set()
        reserved = set(performance_stream_names(self.performance))
        for i, stream in enumerate(self.streams):
            key = (stream.field, tuple(stream.where))
            if key in seen:
                raise PydanticCustomError(
                    "stream_repeated",
                    "stream {field} is listed twice (with the same where)",
                    {"field": stream.field, "at": ("streams", i)},
                )
            if not stream.where and stream.field in reserved:
                raise PydanticCustomError(
                    "stream_reserved",
                    "{field} is a stream the performance block adds: list it once",
                    {"field": stream.field, "at": ("streams", i)},
                )
            seen.add(key)
        return self

    def stored(self) -> dict[str, Any]:
        """The JSON kept in ``deployment.monitoring``: the keys that were given, with their
        values as validated (defaults are not written, so they stay the engine's)."""
        return self.model_dump(mode="json", exclude_unset=True)


def performance_stream_names(performance: PerformanceConfig | None) -> tuple[str, ...]:
    """The streams a ``performance`` block adds (none without one; Dice only if asked)."""
    if performance is None:
        return ()
    return PERFORMANCE_STREAMS if performance.dice else PERFORMANCE_STREAMS[:2]


class MonitoringConfigError(ValueError):
    """A monitoring configuration that is not a ``MonitoringConfig``; the message names each
    field (``monitoring.streams[2].kind: ...``), and ``problems`` lists them."""

    def __init__(self, found: list[str]) -> None:
        more = f"; and {len(found) - 5} more" if len(found) > 5 else ""
        super().__init__("; ".join(found[:5]) + more)
        self.problems = found


def parse_monitoring(value: Any) -> MonitoringConfig:
    """``value`` (a stored or submitted document; None is {}) as a ``MonitoringConfig``, or
    ``MonitoringConfigError`` naming every problem."""
    if isinstance(value, MonitoringConfig):
        return value
    try:
        return MonitoringConfig.model_validate({} if value is None else value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise MonitoringConfigError(problems(errors, ("monitoring",))) from None
