"""The words the store keeps for alerts and phantom verdicts, as enums.

Each member's value is the exact string the database holds and the API shows, so the enums
change no stored row and no response: they only stop a misspelt word ("resloved") from being
written or compared. ``StrEnum`` members are ``str``: they compare equal to the stored text,
bind as it in SQL queries and serialise as it in JSON and templates.
"""

from __future__ import annotations

from enum import StrEnum


class AlertStatus(StrEnum):
    """An alert's life: raised ``open``, taken on ``acknowledged``, closed ``resolved`` (never
    reopened)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Severity(StrEnum):
    """How urgently an alert needs a person, lowest first."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 info, 1 warning, 2 critical: for 'at least this severe' comparisons."""
        return _SEVERITY_RANK[self]

    @classmethod
    def rank_of(cls, value: str, default: int = 1) -> int:
        """The rank of a stored severity; ``default`` for a word that is not one."""
        try:
            return cls(value).rank
        except ValueError:
            return default


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertCause(StrEnum):
    """Why an alert was raised (``alert.cause``).

    A new-condition notice is stored as ``new_condition:<value>`` (the category never seen in
    the reference): ``AlertCause.new_condition(value)`` writes it, ``AlertCause.of(cause)``
    reads any stored cause back to its member."""

    # drift detection (phase4.monitor.surveillance.detection)
    DRIFT = "drift"
    PERFORMANCE = "performance"
    NEW_CONDITION = "new_condition"
    STREAM_STOPPED = "stream_stopped"
    CONFIG_ERROR = "config_error"
    DETECTION_FAILED = "detection_failed"
    # the studies arrive at a rate other than the configured one: the budget follows it
    BUDGET_RATE = "budget_rate"
    # the disparity monitor (phase4.monitor.surveillance.subgroups)
    DISPARITY = "disparity"
    # phantom QC and the AI canary (phase4.monitor.surveillance.phantom_qc)
    PHANTOM_TOLERANCE = "phantom_tolerance"
    PHANTOM_ACTION = "phantom_action"
    PHANTOM_DRIFT = "phantom_drift"
    AI_CANARY = "ai_canary"
    # the heartbeat (phase4.alerts.heartbeat)
    PROBE_SILENCE = "probe_silence"
    # a new model version's revalidation opened or decided (phase4.monitor.domain.revalidation)
    REVALIDATION = "revalidation"

    @staticmethod
    def new_condition(value: object) -> str:
        """The stored cause of a notice about ``value``, a category new to the stream."""
        return f"{AlertCause.NEW_CONDITION.value}:{value}"

    @classmethod
    def of(cls, cause: str) -> AlertCause | None:
        """The member a stored cause belongs to (``new_condition:x`` → NEW_CONDITION)."""
        head = cause.split(":", 1)[0] if cause.startswith("new_condition:") else cause
        try:
            return cls(head)
        except ValueError:
            return None

    @property
    def is_drift(self) -> bool:
        """An alarm on the AI's inputs, outputs or labelled performance (not a failure of the
        monitor itself, not a scanner's QC)."""
        return self in (AlertCause.DRIFT, AlertCause.PERFORMANCE, AlertCause.NEW_CONDITION)


# The causes of a scanner's phantom QC alerts (device alerts, besides the canary).
PHANTOM_CAUSES = frozenset(
    {AlertCause.PHANTOM_TOLERANCE, AlertCause.PHANTOM_ACTION, AlertCause.PHANTOM_DRIFT}
)


class PhantomVerdict(StrEnum):
    """One phantom metric's verdict against the tolerance in force when it was stored.

    The values are the words ``phase4.phantoms.control.tolerance_verdict`` returns (and
    ``no_tolerance`` when none was set). Stored verdicts hold exactly these: any other word in
    rows written before they were enforced was rewritten by migration 0008."""

    PASS = "pass"
    OUTSIDE_TOLERANCE = "tolerance"
    OUTSIDE_ACTION = "action"
    NO_TOLERANCE = "no_tolerance"

    @property
    def level(self) -> int | None:
        """0 pass, 1 outside tolerance, 2 outside the action level; None without a tolerance."""
        return _VERDICT_LEVEL[self]


_VERDICT_LEVEL: dict[PhantomVerdict, int | None] = {
    PhantomVerdict.PASS: 0,
    PhantomVerdict.OUTSIDE_TOLERANCE: 1,
    PhantomVerdict.OUTSIDE_ACTION: 2,
    PhantomVerdict.NO_TOLERANCE: None,
}
