"""Bad input to the installed ``phase4`` command: one line naming what is wrong, exit code 2,
never a traceback, and nothing already stored is lost.

Each case runs the real console script in a fresh process (as a user would), against a SQLite
store made by the command itself.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PHASE4 = Path(sys.executable).parent / "phase4"
# Longer than 80 columns: an error naming it must still be one line (never wrapped).
DEEP = "a-folder-name-long-enough-that-an-error-naming-it-passes-eighty-columns"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def _phase4(args: list[str], cwd: Path, **env: str) -> Run:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PHASE4_")}
    environ.update({"PHASE4_DATABASE_URL": f"sqlite:///{cwd / 'phase4.db'}", "COLUMNS": "80"})
    environ.update(env)
    done = subprocess.run(
        [str(PHASE4), *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120
    )
    return Run(done.returncode, done.stdout, done.stderr)


def _assert_one_line_error(run: Run, *names: str) -> str:
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: ")
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / DEEP
    folder.mkdir()
    ok = _phase4(
        shlex.split("deployment create lesion-ai@site-a --site site-a --model m --version 1"),
        folder,
    )
    assert ok.code == 0, ok.stderr
    return folder


def _audit_rows(folder: Path) -> int:
    with sqlite3.connect(folder / "phase4.db") as conn:
        return int(conn.execute("SELECT count(*) FROM audit_entry").fetchone()[0])


def test_audit_verify_names_the_entry_whose_stored_time_is_malformed(work: Path) -> None:
    with sqlite3.connect(work / "phase4.db") as conn:
        conn.execute("UPDATE audit_entry SET at = 'not-a-time' WHERE seq = 2")
    run = _phase4(["audit", "verify"], work)
    line = _assert_one_line_error(run, "entry 2", "'at'")
    assert "not-a-time" not in line  # a stored value is not echoed
    assert run.code == 1  # the documented verdict of a broken trail
    assert _audit_rows(work) >= 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _dated_csv(path: Path, bad_row: int) -> Path:
    lines = ["timestamp,liver_suvmean"]
    for i in range(80):
        stamp = "yesterday" if i == bad_row else f"2026-01-{i % 28 + 1:02d}T{i % 24:02d}:00:00Z"
        lines.append(f"{stamp},{2 + (i % 7) / 10}")
    path.write_text("\n".join(lines) + "\n")
    return path


CASES: dict[str, tuple[list[str], dict[str, str], tuple[str, ...]]] = {
    # name: (arguments, environment, what the error line must name); {w} is the work folder
    "replay-binary-file": (
        ["replay", "{w}/bin.csv", "--out", "{w}/alarms.jsonl"],
        {},
        ("bin.csv", "UTF-8"),
    ),
    "replay-missing-file": (
        ["replay", "{w}/absent.csv", "--out", "{w}/alarms.jsonl"],
        {},
        ("absent.csv",),
    ),
    "replay-bad-date": (
        ["replay", "{w}/dates.csv", "--out", "{w}/a.jsonl", "--reference-size", "30"],
        {},
        ("yesterday",),
    ),
    "reference-upload-binary-file": (
        shlex.split(
            "reference upload {w}/bin.csv --deployment lesion-ai@site-a --reason validation"
        ),
        {},
        ("bin.csv", "UTF-8"),
    ),
    "reference-upload-unknown-deployment": (
        shlex.split(
            "reference upload {w}/dates.csv --deployment nobody@nowhere --reason validation"
        ),
        {},
        ("nobody@nowhere",),
    ),
    "reference-declare-unknown-deployment": (
        shlex.split(
            "reference declare --deployment nobody@nowhere --stream error --events 3 --cases 400 "
            "--source study --reason validation"
        ),
        {},
        ("nobody@nowhere",),
    ),
    "reference-declare-before-any-stream": (
        shlex.split(
            "reference declare --deployment lesion-ai@site-a --stream error --events 3 "
            "--cases 400 --source study --reason validation"
        ),
        {},
        ("lesion-ai@site-a", "no streams yet"),
    ),
    "detect-unknown-deployment": (["detect", "--deployment", "nobody@nowhere"], {}, ("nobody",)),
    "export-bad-date": (
        shlex.split(
            "export --deployment lesion-ai@site-a --from 2026-13-01 --to 2026-12-31 --out {w}/x"
        ),
        {},
        ("--from", "2026-13-01"),
    ),
    "phantom-not-dicom": (
        ["phantom", "analyze", "{w}/notdicom", "--kind", "flood"],
        {},
        ("notdicom", "not a DICOM file"),
    ),
    "malformed-env-setting": (
        ["detect"],
        {"PHASE4_DETECTION_INTERVAL_S": "every-minute"},
        ("PHASE4_DETECTION_INTERVAL_S", "number"),
    ),
    "listener-malformed-setting": (
        ["probe", "dicom-listen", "--deployment", "d", "--token", "p4_x", "--port", "0"],
        {"PHASE4_LISTENER_MAX_STUDY_BYTES": "every-minute", "PHASE4_SITE_SECRET": "s" * 32},
        ("PHASE4_LISTENER_MAX_STUDY_BYTES", "integer"),
    ),
    "listener-tls-files-missing": (
        ["probe", "dicom-listen", "--deployment", "d", "--token", "p4_x", "--port", "0"],
        {
            "PHASE4_LISTENER_TLS_CERT_FILE": "{w}/absent-cert.pem",
            "PHASE4_LISTENER_TLS_KEY_FILE": "{w}/absent-key.pem",
            "PHASE4_SITE_SECRET": "s" * 32,
        },
        ("PHASE4_LISTENER_TLS_CERT_FILE", "cannot be loaded"),
    ),
    "unreachable-store": (
        ["detect"],
        {"PHASE4_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:{closed_port}/x"},
        ("PHASE4_DATABASE_URL", "refused"),
    ),
    "deployment-monitoring-misspelt-key": (
        [
            *shlex.split("deployment create x@site-a --site site-a --model m --version 1"),
            "--monitoring",
            '{{"studies_per_dya": 20}}',
        ],
        {},
        ("monitoring.studies_per_dya", "extra fields not permitted"),
    ),
    "deployment-monitoring-file-bad-kind": (
        shlex.split(
            "deployment create x@site-a --site site-a --model m --version 1 "
            "--monitoring {w}/monitoring.json"
        ),
        {},
        ("monitoring.streams[1].kind", "numeric, binary or categorical"),
    ),
    "deployment-monitoring-not-json": (
        shlex.split(
            "deployment create x@site-a --site site-a --model m --version 1 "
            "--monitoring {w}/monitoring.yaml"
        ),
        {},
        ("monitoring.yaml", "not JSON", "line 1"),
    ),
    "deployment-monitoring-missing-file": (
        shlex.split(
            "deployment create x@site-a --site site-a --model m --version 1 "
            "--monitoring {w}/absent.json"
        ),
        {},
        ("absent.json",),
    ),
    "unwritable-store-folder": (
        ["deployment", "create", "x", "--site", "s", "--model", "m", "--version", "1"],
        {"PHASE4_DATABASE_URL": "sqlite:////proc/{w}/phase4.db"},
        ("/proc/",),
    ),
}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(work: Path, case: str) -> None:
    _write(work / "bin.csv", b"\xff\xfe\x00timestamp,a\n\x00\x01")
    _dated_csv(work / "dates.csv", bad_row=50)
    (work / "notdicom").mkdir()
    _write(work / "notdicom" / "x.dcm", b"this is not DICOM")
    streams = [{"field": "features.x", "kind": "numeric"}, {"field": "error", "kind": "event"}]
    (work / "monitoring.json").write_text(json.dumps({"streams": streams}))
    (work / "monitoring.yaml").write_text("streams: []\n")
    args, env, names = CASES[case]
    fill = {"w": str(work), "closed_port": str(_closed_port())}
    before = _audit_rows(work)
    run = _phase4(
        [a.format(**fill) for a in args], work, **{k: v.format(**fill) for k, v in env.items()}
    )
    line = _assert_one_line_error(run, *names)
    assert run.code == 2, (run.code, line)
    assert "every-minute" not in line  # a setting's value may be a secret: never echoed
    assert _audit_rows(work) == before


def test_a_valid_monitoring_configuration_is_stored_as_given(work: Path) -> None:
    monitoring = {"studies_per_day": 12, "streams": [{"field": "error", "kind": "binary"}]}
    (work / "monitoring.json").write_text(json.dumps(monitoring))
    for deployment, given in (("file@site-a", "{w}/monitoring.json"), ("inline@site-a", None)):
        value = given.format(w=work) if given else json.dumps(monitoring)
        args = shlex.split(f"deployment create {deployment} --site site-a --model m --version 1")
        run = _phase4([*args, "--monitoring", value], work)
        assert run.code == 0, run.stderr
    with sqlite3.connect(work / "phase4.db") as conn:
        rows = conn.execute(
            "SELECT id, monitoring FROM deployment WHERE id IN ('file@site-a', 'inline@site-a')"
        ).fetchall()
    assert {r[0]: json.loads(r[1]) for r in rows} == {
        "file@site-a": {"studies_per_day": 12.0, "streams": monitoring["streams"]},
        "inline@site-a": {"studies_per_day": 12.0, "streams": monitoring["streams"]},
    }
