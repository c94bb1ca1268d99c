"""``phase4 token create|list|revoke`` against a real store: expiry at creation, a listing
without secrets, revocation by name or id with a reason (audited), one-line errors (exit 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select
from typer.testing import CliRunner

from phase4.cli import app
from phase4.monitor.store.auth import authenticate, token_digest
from phase4.monitor.store.models import ApiToken, AuditEntry
from tests.conftest import Fixture

runner = CliRunner()
VIEWER_X = ("create", "--name", "x", "--role", "viewer")


def _run(db_url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["token", *args, "--database-url", db_url])
    return result.exit_code, result.output


def test_create_with_expiry_list_and_revoke(db_url: str, world: Fixture) -> None:
    code, output = _run(
        db_url, "create", "--name", "ris-bridge", "--role", "viewer", "--expires-in-days", "7"
    )
    assert code == 0, output
    raw = output.strip().splitlines()[-1]
    assert raw.startswith("p4_")
    code, output = _run(
        db_url, "create", "--name", "locum", "--role", "reviewer", "--site", "site-b",
        "--expires-at", "2099-01-31T18:00:00+01:00",
    )  # fmt: skip
    assert code == 0, output

    code, listing = _run(db_url, "list")
    assert code == 0, listing
    assert raw not in listing and token_digest(raw) not in listing
    lines = {line.split()[1]: line.split() for line in listing.splitlines()[1:]}
    assert set(lines) >= {"ris-bridge", "locum", "probe-a", "physicist-b"}
    assert lines["locum"][2:4] == ["reviewer", "site-b"]
    assert "2099-01-31 17:00" in " ".join(lines["locum"])  # shown in UTC
    expires = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%d")
    assert expires in " ".join(lines["ris-bridge"]) and lines["ris-bridge"][-1] == "active"

    code, output = _run(db_url, "revoke", "ris-bridge", "--reason", "bridge replaced")
    assert code == 0, output
    assert "revoked token" in output and "ris-bridge" in output
    with Session(world.engine) as s:
        assert authenticate(s, raw) is None
        entry = s.exec(
            select(AuditEntry)
            .where(AuditEntry.action == "token.revoke")
            .order_by(col(AuditEntry.seq).desc())
        ).first()
        assert entry is not None and entry.actor == "cli" and entry.reason == "bridge replaced"
        locum = s.exec(select(ApiToken).where(ApiToken.name == "locum")).one()
    code, listing = _run(db_url, "list")
    (line,) = [row for row in listing.splitlines() if " ris-bridge " in row]
    assert line.split()[-1] == "revoked"
    code, output = _run(db_url, "revoke", str(locum.id), "--reason", "locum contract ended")
    assert code == 0, output
    assert "locum" in output


def test_errors_are_one_line_with_exit_2_and_change_nothing(db_url: str, world: Fixture) -> None:
    _run(db_url, "create", "--name", "twin", "--role", "viewer")
    _run(db_url, "create", "--name", "twin", "--role", "viewer")
    cases = [
        (("revoke", "twin", "--reason", "x"), "2 tokens are named 'twin'"),
        (("revoke", "nobody", "--reason", "x"), "no token named 'nobody'"),
        (("revoke", "99999999999", "--reason", "x"), "no token with id 99999999999"),
        (("revoke", "viewer", "--reason", "  "), "a reason is required"),
        (("create", "--name", "x", "--role", "viewer", "--expires-at", "soon"), "ISO 8601"),
        (
            ("create", "--name", "x", "--role", "viewer", "--expires-at", "2099-01-01T00:00"),
            "time zone",
        ),
        (
            ("create", "--name", "x", "--role", "viewer", "--expires-at", "2001-01-01T00:00Z"),
            "not in the future",
        ),
        (
            ("create", "--name", "x", "--role", "viewer", "--expires-in-days", "0"),
            "give 1 to 3650",
        ),
        (
            (*VIEWER_X, "--expires-in-days", "2", "--expires-at", "2099-01-01T00:00Z"),
            "not both",
        ),
    ]
    with Session(world.engine) as s:
        before = [(t.name, t.revoked_at) for t in s.exec(select(ApiToken)) if t.name != "probe-a"]
    for args, words in cases:
        code, output = _run(db_url, *args)
        assert code == 2, (args, output)
        assert words in output, (args, output)
        assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    code, output = _run(db_url, "revoke", "probe-a", "--reason", "rotated")
    assert code == 0
    code, output = _run(db_url, "revoke", "probe-a", "--reason", "rotated twice")
    assert code == 2 and "already revoked" in output
    with Session(world.engine) as s:
        after = [(t.name, t.revoked_at) for t in s.exec(select(ApiToken)) if t.name != "probe-a"]
    assert sorted(after) == sorted(before)  # the refused commands created and revoked nothing
