"""Reading a stored phantom verdict: 0 pass, 1 outside tolerance, 2 outside the action level.

A result's ``verdicts`` maps each metric to ``{"verdict": <PhantomVerdict>, "value": ...}``
(``phase4.monitor.surveillance.phantom_qc.judge`` writes it at ingest). The words are
canonical in the store (migration 0008 rewrote the synonyms older rows held), so reading is a
lookup, never a normalisation: a word that is not a ``PhantomVerdict`` is not a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phase4.monitor.core.statuses import PhantomVerdict


def stored_verdict(entry: Any) -> PhantomVerdict | None:
    """The verdict of one metric's stored entry (a mapping holding ``verdict``, or the bare
    word); None when it holds none."""
    word = entry.get("verdict") if isinstance(entry, Mapping) else entry
    if not isinstance(word, str):
        return None
    try:
        return PhantomVerdict(word)
    except ValueError:
        return None


def verdict_level(entry: Any) -> int | None:
    """The level of one metric's stored entry; None without a verdict or a tolerance."""
    verdict = stored_verdict(entry)
    return verdict.level if verdict is not None else None
