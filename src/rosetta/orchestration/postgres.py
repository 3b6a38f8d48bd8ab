"""A PostgreSQL 15 cluster of its own (Debian's binaries) for the team's servers: created in a folder, started
on 127.0.0.1 with its own port and password authentication, its databases made, stopped. PostgreSQL refuses to
run as root: as root its tools run as the ``postgres`` user, who owns the data folder.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from rosetta.errors import RosettaError
from rosetta.fsutil import write_private
from rosetta.orchestration import processes

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@dataclass(frozen=True)
class Cluster:
    """The cluster whose data folder is ``data``, listening on 127.0.0.1:``port`` (TCP only: no socket file)."""

    data: Path
    port: int

    @property
    def log(self) -> Path:
        return self.data / "server.log"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # From "/": the postgres user may not be allowed into the working directory.
        done = subprocess.run(_as_postgres([str(PG_BIN / tool), *args]), cwd="/", capture_output=True, text=True,
                              timeout=300)
        if check and done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RosettaError(f"PostgreSQL's {tool} failed for {self.data} ({last[0]}); see {self.log}")
        return done

    def running(self) -> bool:
        return (self.data / "PG_VERSION").is_file() and self._run("pg_ctl", "-D", str(self.data), "status",
                                                                  check=False).returncode == 0

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def init(self, user: str, password: str) -> None:
        """A new cluster in ``data`` whose superuser ``user`` signs in with ``password`` (no trust, no peer)."""
        if not (PG_BIN / "initdb").is_file():
            raise RosettaError(f"PostgreSQL 15 is not installed ({PG_BIN / 'initdb'} is missing); run `make install` "
                               "(it installs packages/debian-postgresql.txt)")
        self.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        _chown_postgres(self.data)
        if os.geteuid() == 0 and subprocess.run(_as_postgres(["test", "-w", str(self.data)]),
                                                capture_output=True).returncode != 0:
            shutil.rmtree(self.data)
            raise RosettaError(f"{self.data}: the postgres user cannot reach this folder; let it through the folders "
                               f"above it (chmod o+x) or choose another place with --folder")
        pwfile = self.data.parent / ".pg-password"  # initdb wants an empty data folder
        write_private(pwfile, password + "\n")
        _chown_postgres(pwfile)
        print(f"creating a PostgreSQL cluster in {self.data}", flush=True)
        try:
            done = self._run("initdb", "-D", str(self.data), "-U", user, f"--pwfile={pwfile}",
                             "--auth=scram-sha-256", "-E", "UTF8", check=False)
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)  # no half-made cluster that looks like one
            last = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RosettaError(f"initdb could not create a cluster in {self.data} ({last[0]})")

    def start(self, user: str, password: str, timeout: float) -> None:
        """Start the cluster (created first if there is none) and return once it accepts connections."""
        if not (self.data / "PG_VERSION").is_file():
            self.init(user, password)
        if processes.port_in_use(self.port):
            raise RosettaError(f"port {self.port} on 127.0.0.1 is taken by another program; choose the PostgreSQL "
                               "port with --postgres-port")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", str(int(timeout)),
                  "start")

    def create_databases(self, user: str, password: str, names: Iterable[str]) -> None:
        """Create those of ``names`` the cluster does not hold yet."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=user, password=password, dbname="postgres",
                             autocommit=True) as conn:
            have = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in names:
                if name not in have:
                    conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> bool:
        """Stop the cluster (fast: open sessions are ended); whether it was running."""
        if not self.running():
            return False
        pid = self.postmaster_pid()
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        if pid is not None:
            processes.stop_group(pid)  # the postmaster leads its own session; nothing of it may outlive it
        return True
