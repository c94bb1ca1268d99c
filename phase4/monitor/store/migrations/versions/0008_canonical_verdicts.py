"""canonical phantom verdicts: the synonyms older phantom results hold rewritten as pass,
tolerance or action, so that readers look a verdict up instead of normalising it

Revision ID: 0008_canonical_verdicts
Revises: 0007_detection_claims
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008_canonical_verdicts"
down_revision: str | None = "0007_detection_claims"
branch_labels = None
depends_on = None

# Every word a reader used to accept for a verdict, after folding case, spaces and hyphens
# (a frozen copy: this migration must mean the same thing whatever the code says later).
CANONICAL = {
    "pass": "pass",
    "ok": "pass",
    "within": "pass",
    "within_tolerance": "pass",
    "tolerance": "tolerance",
    "warn": "tolerance",
    "warning": "tolerance",
    "outside_tolerance": "tolerance",
    "action": "action",
    "fail": "action",
    "failed": "action",
    "outside_action": "action",
}
BATCH = 500


def canonical_word(word: Any) -> str | None:
    """The canonical verdict of a stored word or boolean (True passes); None: not a verdict."""
    if isinstance(word, bool):
        return "pass" if word else "action"
    if isinstance(word, str):
        return CANONICAL.get(word.strip().lower().replace(" ", "_").replace("-", "_"))
    return None


def canonical_entry(entry: Any) -> Any:
    """One metric's entry with its verdict canonical: a mapping keeps its other keys and
    holds the word under ``verdict`` (read before from ``verdict``, ``status`` or ``level``);
    a bare word or boolean becomes the bare word. Anything else is left as it is."""
    if isinstance(entry, Mapping):
        word = canonical_word(entry.get("verdict", entry.get("status", entry.get("level"))))
        if word is None or entry.get("verdict") == word:
            return entry
        return {**entry, "verdict": word}
    word = canonical_word(entry)
    return entry if word is None else word


def upgrade() -> None:
    results = sa.table(
        "phantom_result", sa.column("id", sa.Integer()), sa.column("verdicts", sa.JSON())
    )
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(results.c.id, results.c.verdicts)
            .where(results.c.id > last)
            .order_by(results.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row_id, verdicts in rows:
            if isinstance(verdicts, Mapping):
                fixed = {metric: canonical_entry(v) for metric, v in verdicts.items()}
                if fixed != verdicts:
                    bind.execute(
                        sa.update(results).where(results.c.id == row_id).values(verdicts=fixed)
                    )
        last = rows[-1][0]


def downgrade() -> None:
    # Nothing to undo: the canonical words are verdicts to every earlier reader too, and the
    # synonyms they replaced are not kept.
    pass
