"""A throwaway PostgreSQL server for one test session, made from the machine's server binaries.

The binaries are ``initdb`` and ``pg_ctl`` (PostgreSQL's "Server Applications"): on PATH, or
where Debian's ``postgresql`` package puts them, ``/usr/lib/postgresql/<major>/bin`` (the newest
major wins); ``.ci/system-deps`` installs that package when they are missing. The cluster lives
in a fresh directory under the system's temporary directory: trust authentication, listening
on a free loopback port only (``listen_addresses=127.0.0.1``), its Unix socket in that directory
(``-k``), without fsync (its data is thrown away). initdb refuses to run as root, so as root the
server is run through ``runuser`` as an unprivileged user (``postgres``, else ``nobody``), who owns
the directory. ``stop`` ends it (``pg_ctl stop -m fast``, then ``-m immediate``) and removes the
directory; it also runs at interpreter exit if the session could not call it. A watchdog
process (``WATCHDOG``) outlives a session killed outright (SIGKILL, no atexit): it polls the
session's pid and, once the session is gone, stops the server and removes the directory, so the
server never outlives the tests that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

DEBIAN_BINARIES = Path("/usr/lib/postgresql")
INSTALL_HINT = (
    "install PostgreSQL's server binaries (Debian: apt-get install postgresql, which "
    ".ci/system-deps does as root), or set PHASE4_TEST_POSTGRES_URL to a server"
)
UNPRIVILEGED_USERS = ("postgres", "nobody")
START_ATTEMPTS = 5  # a free port can be taken between our probe of it and the server's bind
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
DATABASE = "test"
WATCHDOG_POLL_S = 1.0
# Run by the watchdog: wait for the session's pid to go, then stop the cluster, remove it.
WATCHDOG = """
import os, shutil, subprocess, sys, time
pid, poll, root, stop = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    except PermissionError:
        pass
    time.sleep(poll)
if os.path.isdir(root):
    subprocess.run(stop, capture_output=True, timeout=60)
    shutil.rmtree(root, ignore_errors=True)
"""


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None if this machine has no server."""
    initdb = shutil.which("initdb")
    if initdb is not None and (Path(initdb).resolve().parent / "pg_ctl").is_file():
        return Path(initdb).resolve().parent

    def major(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))

    for bindir in sorted(DEBIAN_BINARIES.glob("*/bin"), key=major, reverse=True):
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayPostgres:
    """One cluster: ``start()`` returns its URL (database ``test``, user ``postgres``)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root: Path | None = None
        self.port: int | None = None
        self._as_user: str | None = None
        self._running = False

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def start(self) -> str:
        self.root = Path(tempfile.mkdtemp(prefix="phase4-pg-"))
        atexit.register(self.stop)
        if os.geteuid() == 0:
            self._as_user = self._unprivileged_user()
            entry = pwd.getpwnam(self._as_user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        cluster = ["-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8"]
        self._server_command("initdb", [*cluster, "--no-locale", "--no-sync"])
        failure = ""
        for _ in range(START_ATTEMPTS):
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            start = ["start", "-D", str(self.data), "-l", str(self.log), "-w"]
            done = self._server_command(
                "pg_ctl", [*start, "-t", str(START_TIMEOUT_S), "-o", options], check=False
            )
            if done.returncode == 0:
                self.port = port
                self._running = True
                break
            failure = f"{done.stdout}{done.stderr}\n{self._log_tail()}"
        else:
            raise RuntimeError(f"the throwaway PostgreSQL did not start:\n{failure}")
        self._create_database()
        self._start_watchdog()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _start_watchdog(self) -> None:
        """A detached process that stops the server once this process is gone, however it
        ended; a normal ``stop`` leaves it nothing to do (the directory is gone)."""
        stop = [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate"]
        if self._as_user is not None:
            stop = ["runuser", "-u", self._as_user, "--", *stop]
        args = [str(os.getpid()), str(WATCHDOG_POLL_S), str(self.root), *stop]
        subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not killed with the session's process group
        )

    def stop(self) -> None:
        """Stops the server (also when its clients still hold connections) and removes it."""
        if self._running:
            for mode in ("fast", "immediate"):
                done = self._server_command(
                    "pg_ctl",
                    ["stop", "-D", str(self.data), "-m", mode, "-w", "-t", str(STOP_TIMEOUT_S)],
                    check=False,
                )
                if done.returncode == 0:
                    break
            self._running = False
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        atexit.unregister(self.stop)

    def _unprivileged_user(self) -> str:
        for name in UNPRIVILEGED_USERS:
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        raise RuntimeError(
            f"initdb refuses to run as root and none of the users {UNPRIVILEGED_USERS} exists"
        )

    def _server_command(
        self, program: str, args: list[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """initdb or pg_ctl, as the unprivileged user when we are root, from the cluster's
        directory (the user may not be allowed into ours)."""
        command = [str(self.bindir / program), *args]
        if self._as_user is not None:
            command = ["runuser", "-u", self._as_user, "--", *command]
        return self._run(command, check)

    def _create_database(self) -> None:
        import psycopg  # the driver the tests use (the server extra)

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def _run(self, command: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        done = subprocess.run(
            command,
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 30,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                + self._log_tail()
            )
        return done

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AssertionError):
            return ""
