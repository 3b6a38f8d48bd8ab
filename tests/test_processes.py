"""The team's servers as processes (``rosetta.orchestration.processes``): a pid file names the process it started,
by pid and start time, so a pid file left by a process that is gone, its pid since given to another process, makes
``team down`` signal nothing and ``team up`` start the server again."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from rosetta.orchestration import processes
from rosetta.orchestration.team import load_team, team_down


@pytest.fixture
def bystander():
    """Someone else's long-running process, in its own session as a server of ours would be."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_a_pid_file_naming_another_process_is_never_signalled(tmp_path, bystander):
    team = load_team(tmp_path / "team", tmp_path)
    time.sleep(0.05)  # the worker starts a clock tick (10 ms) after the bystander, as a reused pid's process would
    worker = processes.start("team-worker-2", [sys.executable, "-c", "import time; time.sleep(120)"], team.folder,
                             {"PATH": "/usr/bin:/bin"})
    pid_file = team.folder / "team-worker-2.pid"
    assert processes.running(pid_file) and processes.read_pid(pid_file) == worker.pid
    worker_started = pid_file.read_text().split()[1]
    assert worker_started != processes.start_time(bystander.pid)
    processes.stop(pid_file)
    assert worker.wait(10) is not None and not pid_file.exists()
    # The worker is gone and its pid reused by another process: the file names that pid, bare (as an older rosetta
    # wrote it) or with the start time of the worker it was written for.
    for recorded in (f"{bystander.pid}\n", f"{bystander.pid} {worker_started}\n"):
        pid_file.write_text(recorded)
        assert not processes.running(pid_file) and processes.read_pid(pid_file) is None  # up starts the worker again
        team_down(team)
        assert bystander.poll() is None, "team down signalled a process it never started"
        assert not pid_file.exists()
