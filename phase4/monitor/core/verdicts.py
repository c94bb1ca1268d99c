"""Phantom QC verdicts on one ordinal scale, whatever words the analysis used:
0 pass, 1 outside tolerance, 2 outside the action level (None: not a verdict)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VERDICT_LEVELS = {
    "pass": 0,
    "ok": 0,
    "within": 0,
    "within_tolerance": 0,
    "tolerance": 1,
    "warn": 1,
    "warning": 1,
    "outside_tolerance": 1,
    "action": 2,
    "fail": 2,
    "failed": 2,
    "outside_action": 2,
}


def verdict_level(verdict: Any) -> int | None:
    """The level of a verdict word, a boolean (True passes), or a mapping holding one."""
    if isinstance(verdict, Mapping):
        verdict = verdict.get("verdict", verdict.get("status", verdict.get("level")))
    if isinstance(verdict, bool):
        return 0 if verdict else 2
    if isinstance(verdict, str):
        return VERDICT_LEVELS.get(verdict.strip().lower().replace(" ", "_").replace("-", "_"))
    return None
