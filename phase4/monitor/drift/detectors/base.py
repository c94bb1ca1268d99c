"""The contract every detector keeps, in the manner of river's ``base.DriftDetector``.

A detector takes one observation at a time. ``update(x)`` returns an :class:`Alarm` when it
alarms (or notices something new) and None otherwise, so ``bool(detector.update(x))`` is
river's ``drift_detected``; the alarm carries what a person needs besides the yes/no: the
statistic, the threshold and the estimated start of the change. Between observations
``statistic`` is where the detector stands and ``threshold`` the decision limit, in the
statistic's units; ``describe()`` says the same in words with the detector's parameters
(this is what alarm evidence, /metrics and the web UI print); ``replay(values)`` is the
statistic's path over a sequence, for charts, computed on a restarted copy so the detector
itself is untouched; ``to_dict``/``from_dict`` save and restore the state.

No view (``/metrics``, the UI, the evidence) computes a detector's statistic, threshold or
recursion itself: each asks the detector.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, Self, TypeVar

X = TypeVar("X")


@dataclass(frozen=True, slots=True)
class Alarm:
    """A detector fired (``kind='alarm'``) or saw something new (``kind='notice'``).

    ``statistic`` is signed for the two-sided EWMA and the performance charts (the sign is the
    direction); the value compared with ``threshold`` is its magnitude."""

    detector: str
    index: int
    statistic: float
    threshold: float
    change_index_estimate: int
    kind: str = "alarm"
    direction: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class DetectorMode(StrEnum):
    """How a detector's statistic evolves, which decides how it can be shown."""

    # a running statistic updated by every observation (a control chart): a time series
    SEQUENTIAL = "sequential"
    # a test of each complete window: the statistic is that of the last window judged
    WINDOWED = "windowed"
    # no statistic to watch: every new value is announced at once
    NOTICE = "notice"


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter of a detector, with its unit and what it means."""

    name: str
    value: float
    unit: str
    meaning: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DetectorSummary:
    """What a detector is and where it stands, for people and for programs.

    ``text`` says what the detector computes and when it alarms, with its parameters' values;
    ``now`` says where it stands (``"1.23 of threshold 5.01"``, ``"window 12 of 50 filled"``).
    """

    kind: str
    mode: DetectorMode
    statistic: float
    threshold: float
    unit: str
    parameters: tuple[Parameter, ...]
    text: str
    now: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "mode": self.mode.value,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "unit": self.unit,
            "parameters": [p.to_dict() for p in self.parameters],
            "text": self.text,
            "now": self.now,
        }


class Detector(ABC, Generic[X]):
    """A streaming detector of observations of type ``X`` (see the module's docstring).

    Subclasses are slotted dataclasses whose fields are their saved state."""

    __slots__ = ()

    name: ClassVar[str]
    mode: ClassVar[DetectorMode]
    n: int  # observations taken

    @abstractmethod
    def update(self, x: X, index: int | None = None) -> Alarm | None:
        """Take one observation (``index``: its position in the stream, for dating; by
        default the count of observations so far). Returns the alarm, or None."""

    @property
    @abstractmethod
    def statistic(self) -> float:
        """The current value of the statistic (non-negative; see ``threshold``)."""

    @property
    @abstractmethod
    def threshold(self) -> float:
        """The decision limit, in the statistic's units: the detector alarms when the
        statistic passes it."""

    @abstractmethod
    def describe(self) -> DetectorSummary:
        """The detector and its state in words and numbers."""

    @abstractmethod
    def restarted(self) -> Self:
        """A copy with the same parameters (the same calibration) and a fresh state."""

    @abstractmethod
    def candidate_starts(self) -> set[int]:
        """The observation indices the detector may still date a change to."""

    def replay(self, values: Iterable[X]) -> list[float]:
        """The statistic's path over ``values`` from a restart, without changing this
        detector: at each observation the value compared with the threshold (so an alarm is
        a point beyond it; the detector restarts after it, as ``update`` does)."""
        return trace(self, values).path

    def to_dict(self) -> dict[str, Any]:
        """The fields, as ``dataclasses.asdict`` gives them (a deep copy), without its generic
        walk: saving a deployment's state calls this for every detector of every stream, and
        ``asdict``'s deep copy of each number was most of the cost."""
        return {name: plain_copy(getattr(self, name)) for name in field_names(type(self))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """From :meth:`to_dict` of the current version (older saved states go through
        ``phase4.monitor.drift.state.upgrade_state`` first)."""
        return cls(**d)


_ATOMS = frozenset({int, float, str, bool, type(None)})
FIELD_NAMES_CACHE: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    names = FIELD_NAMES_CACHE.get(cls)
    if names is None:
        names = FIELD_NAMES_CACHE[cls] = tuple(f.name for f in fields(cls))
    return names


def plain_copy(value: Any) -> Any:
    """``value`` copied as ``dataclasses.asdict`` copies a field: lists, tuples and dicts
    rebuilt, dataclasses turned into dicts, anything else deep-copied (numbers, strings and None
    are returned as they are, which is what deep-copying them gives)."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is list:
        return [v if type(v) in _ATOMS else plain_copy(v) for v in value]
    if kind is dict:
        return {plain_copy(k): plain_copy(v) for k, v in value.items()}
    if kind is tuple:
        return tuple(plain_copy(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return copy.deepcopy(value)


@dataclass(frozen=True, slots=True)
class Trace:
    """A detector run over a sequence from a restart: the statistic compared with the
    threshold at each value, the positions (in the sequence) where it alarmed (or, for a
    notice, noticed), and the detector as it stands after the last value."""

    path: list[float]
    alarms: list[int]
    end: Detector[Any]


def trace(detector: Detector[X], values: Iterable[X]) -> Trace:
    """Run a restarted copy of ``detector`` over ``values`` (``detector`` is not changed)."""
    replica = detector.restarted()
    path: list[float] = []
    alarms: list[int] = []
    for position, x in enumerate(values):
        alarm = replica.update(x)
        if alarm is None:
            path.append(replica.statistic)
        else:  # the value that crossed the threshold, before the detector restarted
            path.append(abs(alarm.statistic))
            alarms.append(position)
    return Trace(path, alarms, replica)
