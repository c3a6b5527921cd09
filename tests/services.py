"""Private PostgreSQL and Redis servers that a test may stop, kill and restart without touching anyone else's."""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.procs import Proc, free_port, wait_for


def _pg_bin() -> Path:
    return Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])


class PrivatePostgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="plateau-pg-"))
        shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self._as_postgres("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(_pg_bin() / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self._as_postgres(
            "pg_ctl",
            "-D",
            str(self.dir / "data"),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            "start",
        )

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A Redis that keeps nothing on disk: killing it loses every queued message, as in a real crash."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.proc: Proc | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = Proc(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            {},
            self.log,
        )
        wait_for(lambda: "Ready to accept connections" in self.proc.tail(), 20, self.proc.tail)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.p.wait(10)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stop()
