"""``phase4 revalidate`` through the installed console script, in fresh processes on a SQLite
store: the whole gate (open, criteria, validation set, evaluate, decide), every skipped step
and bad input refused with one line naming it and exit 2, and the audit trail of each step."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from tests.cli.test_bad_input import _assert_one_line_error, _phase4

DEP = "lesion-ai@site-a"


def _csv(path: Path, n: int = 600, fp_every: int = 0) -> Path:
    lines = ["case_id,truth,accepted_call,candidate_call,accepted_dice,candidate_dice"]
    for i in range(n):
        truth = i % 2
        cand = 1 if fp_every and not truth and i % fp_every == 0 else truth
        lines.append(f"c{i},{truth},{truth},{cand},0.81,0.80")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_gate_from_the_command_line(tmp_path: Path) -> None:
    def run(*args: str):  # type: ignore[no-untyped-def]
        return _phase4(list(args), tmp_path)

    made = run("deployment", "create", DEP, "--site", "site-a", "--model", "M", "--version", "2.1")
    assert made.code == 0, made.stderr
    assert run("revalidate", "open", DEP, "--version", "2.2", "--by", "dr-curie").code == 0

    early = run("revalidate", "evaluate", DEP, "--by", "dr-curie")
    assert early.code == 2
    _assert_one_line_error(early, "declare the acceptance criteria first")
    bad = run("revalidate", "declare-criteria", DEP, "--by", "dr-curie", "--dice", "two")
    assert bad.code == 2
    _assert_one_line_error(bad, "--dice")
    none = run("revalidate", "declare-criteria", DEP, "--by", "dr-curie")
    _assert_one_line_error(none, "at least one margin")

    ok = run(
        "revalidate", "declare-criteria", DEP, "--by", "dr-curie",
        "--sensitivity", "5%", "--specificity", "0.05", "--dice", "0.03",
    )  # fmt: skip
    assert ok.code == 0, ok.stderr
    hostile = tmp_path / "hostile.csv"
    hostile.write_text("case_id,truth,accepted_call,candidate_call\nc1,1,1,maybe\n")
    refused = run("revalidate", "attach-validation-set", DEP, str(hostile), "--by", "dr-curie")
    assert refused.code == 2
    _assert_one_line_error(refused, "row 2, column candidate_call")
    missing = run("revalidate", "attach-validation-set", DEP, "nope.csv", "--by", "dr-curie")
    _assert_one_line_error(missing, "nope.csv")

    csv_path = _csv(tmp_path / "locked.csv", fp_every=5)
    attached = run("revalidate", "attach-validation-set", DEP, str(csv_path), "--by", "dr-curie")
    assert attached.code == 0 and "600 cases" in attached.stdout, attached.stderr
    assert hashlib.sha256(csv_path.read_bytes()).hexdigest() in attached.stdout
    evaluated = run("revalidate", "evaluate", DEP, "--by", "dr-curie")
    assert evaluated.code == 0 and "evaluation fail" in evaluated.stdout
    plain = run("revalidate", "decide", DEP, "accept", "--by", "dr-curie")
    _assert_one_line_error(plain, "failed on specificity")
    word = run("revalidate", "decide", DEP, "maybe", "--by", "dr-curie")
    _assert_one_line_error(word, "decision")
    done = run("revalidate", "decide", DEP, "reject", "--by", "dr-curie")
    assert done.code == 0 and "reject by dr-curie" in done.stdout
    shown = run("revalidate", "show", DEP, "--id", "1", "--json")
    assert '"decision": "reject"' in shown.stdout
    assert "revalidation 1" in run("revalidate", "list").stdout

    with sqlite3.connect(tmp_path / "phase4.db") as db:
        actions = [
            a
            for (a,) in db.execute(
                "SELECT action FROM audit_entry WHERE entity_type = 'revalidation' ORDER BY seq"
            )
        ]
    assert actions == [
        "revalidation.open",
        "revalidation.declare_criteria",
        "revalidation.attach_validation_set",
        "revalidation.evaluate",
        "revalidation.decide",
    ]
