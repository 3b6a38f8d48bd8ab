"""Long-running servers as plain processes: each started in its own session (so stopping it stops whatever it
started, and nothing else), its process id and start time in a pid file, its output in a log; a wait until it
answers its health check, and a stop that ends the whole process group. A pid file whose process is gone, or whose
pid now names another process (the kernel reuses pids), names nothing: it is never signalled.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

from rosetta.errors import RosettaError


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 (a health endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def group_alive(pid: int) -> bool:
    """Whether any process of the process group ``pid`` leads is still there."""
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a group of another user's processes: alive, not ours to signal
        return True


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks after boot, ``/proc/<pid>/stat``); None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def read_pid(pid_file: Path) -> int | None:
    """The process group ``pid_file`` records, when it is still the one started: its leader has the recorded start
    time, or is gone while others of its group run (the kernel reuses no pid a live group holds). None for a file
    that is missing, damaged, or names a process started since, which is never ours to signal."""
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    now = start_time(pid)
    if now == started or (now is None and group_alive(pid)):
        return pid
    return None


def running(pid_file: Path) -> bool:
    """Whether the process group recorded in ``pid_file`` still runs."""
    pid = read_pid(pid_file)
    return pid is not None and group_alive(pid)


def start(name: str, cmd: list[str], state: Path, env: Mapping[str, str], cwd: Path | None = None
          ) -> subprocess.Popen:
    """Start ``cmd`` in a new session, output to ``state/<name>.log``, its pid and start time in
    ``state/<name>.pid``."""
    state.mkdir(parents=True, exist_ok=True)
    with (state / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(cmd, env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (state / f"{name}.pid").write_text(f"{proc.pid} {start_time(proc.pid)}\n")
    return proc


def wait_until(ready: Callable[[], bool], what: str, log: Path, timeout: float,
               proc: subprocess.Popen | None = None) -> None:
    """Poll ``ready`` until it holds; a process that exits, or ``timeout`` seconds, end in one sentence that names
    ``what`` and its log."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise RosettaError(f"{what} exited with status {proc.returncode} before it was ready; its log {log} says "
                               "why")
        if time.monotonic() > deadline:
            raise RosettaError(f"{what} was not ready within {timeout:.0f} s; see its log {log} (a slow machine: "
                               "raise --timeout)")
        time.sleep(0.5)


def stop_group(pid: int, grace: float = 20.0) -> None:
    """SIGTERM to the process group ``pid`` leads, SIGKILL to what is left after ``grace`` seconds; returns once
    the group is gone."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while group_alive(pid):
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
        time.sleep(0.2)
        try:  # our own child: reap it, or it stays a zombie that keeps the group alive
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def stop(pid_file: Path, grace: float = 20.0) -> bool:
    """Stop the process group recorded in ``pid_file`` and remove the file; whether one was running."""
    pid = read_pid(pid_file)
    was_running = pid is not None and group_alive(pid)
    if was_running:
        stop_group(pid, grace)
    pid_file.unlink(missing_ok=True)
    return was_running
