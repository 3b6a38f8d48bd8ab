"""A local Prefect stack for the train-rosetta deployments: ``up`` starts a Prefect server on ``--host`` (127.0.0.1;
0.0.0.0 lets workers on other hosts reach it), waits until it answers, creates the process work pools ``local``
and ``gpu`` (GPU runs wait there for a worker on a GPU host) and starts a worker for ``local``; ``down`` stops
both. ``make prefect-up [PREFECT_HOST=0.0.0.0]`` / ``make prefect-down``.

Logs and process ids go to ``--state-dir`` (default ``.prefect-local/``); ``PREFECT_HOME`` is respected.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
POOLS = ("local", "gpu")


def _prefect(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "prefect"), *args], env=env, capture_output=True, text=True, timeout=120)


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _alive(pid_file: Path) -> bool:
    try:
        os.killpg(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def _start(name: str, cmd: list[str], state: Path, env: dict) -> subprocess.Popen:
    # Its own session, so `down` stops it and whatever it started, and nothing else.
    log = (state / f"{name}.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (state / f"{name}.pid").write_text(str(proc.pid))
    return proc


def up(port: int, state: Path, timeout: float, host: str = "127.0.0.1") -> int:
    # Bound to every address, the server still answers this machine's workers on loopback.
    api = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/api"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PREFECT_API_URL": api}
    state.mkdir(parents=True, exist_ok=True)
    if _healthy(api):
        print(f"a Prefect server already answers at {api}; using it")
    else:
        server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
        server = _start("server", [str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port)],
                        state, server_env)
        deadline = time.time() + timeout
        while not _healthy(api):
            if server.poll() is not None or time.time() > deadline:
                print(f"error: the Prefect server did not answer {api}/health within {timeout:.0f} s; see "
                      f"{state / 'server.log'}", file=sys.stderr)
                down(state)
                return 1
            time.sleep(1)
        print(f"Prefect server ready at {api} (log {state / 'server.log'})")
    for pool in POOLS:
        if _prefect("work-pool", "inspect", pool, env=env).returncode != 0:
            done = _prefect("work-pool", "create", pool, "--type", "process", env=env)
            if done.returncode != 0:
                print(f"error: could not create work pool {pool!r}: {done.stdout.strip()} {done.stderr.strip()}",
                      file=sys.stderr)
                return 1
    if _alive(state / "worker.pid"):
        print(f"a worker for pool 'local' already runs (pid file {state / 'worker.pid'}); now run:\n"
              f"  export PREFECT_API_URL={api}")
        return 0
    worker = _start("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "local"], state, env)
    time.sleep(3)
    if worker.poll() is not None:
        print(f"error: the worker for pool 'local' exited; see {state / 'worker.log'}", file=sys.stderr)
        return 1
    print(f"worker for pool 'local' started (log {state / 'worker.log'}); now run:\n"
          f"  export PREFECT_API_URL={api}")
    if host in ("0.0.0.0", "::"):
        print(f"workers on other hosts: export PREFECT_API_URL=http://<this host's address>:{port}/api")
    return 0


def down(state: Path) -> int:
    for name in ("worker", "server"):
        pid_file = state / f"{name}.pid"
        if not pid_file.is_file():
            continue
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(40):
                os.killpg(pid, 0)
                time.sleep(0.5)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink()
        print(f"stopped the Prefect {name}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address the server binds: 0.0.0.0 for workers on other hosts (GPU hosts)")
    parser.add_argument("--state-dir", type=Path, default=Path(".prefect-local"))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server")
    args = parser.parse_args()
    return up(args.port, args.state_dir, args.timeout, args.host) if args.command == "up" else down(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
