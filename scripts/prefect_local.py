"""A local Prefect stack for the train-rosetta deployments: ``up`` starts a Prefect server on ``--host`` (127.0.0.1;
0.0.0.0 lets workers on other hosts reach it), waits until it answers, creates the process work pools ``local``
and ``gpu`` (GPU runs wait there for a worker on a GPU host) and starts a worker for ``local``; ``down`` stops
both. ``make prefect-up [PREFECT_HOST=0.0.0.0]`` / ``make prefect-down``.

Logs and process ids go to ``--state-dir`` (default ``.prefect-local/``); ``PREFECT_HOME`` is respected. The
processes are supervised as the team's servers are (``rosetta.orchestration.processes``), each in a session of
its own, so ``down`` stops it and whatever it started, and nothing else.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rosetta.errors import RosettaError
from rosetta.orchestration import processes
from rosetta.orchestration.team import create_pools

BIN = Path(sys.executable).parent


def up(port: int, state: Path, timeout: float, host: str = "127.0.0.1") -> int:
    # Bound to every address, the server still answers this machine's workers on loopback.
    api = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/api"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PREFECT_API_URL": api}
    healthy = lambda: processes.http_ok(f"{api}/health")  # noqa: E731
    try:
        if healthy():
            print(f"a Prefect server already answers at {api}; using it")
        else:
            server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
            server = processes.start("server", [str(BIN / "prefect"), "server", "start", "--host", host, "--port",
                                                str(port)], state, server_env)
            try:
                processes.wait_until(healthy, f"the Prefect server at {api}", state / "server.log", timeout, server)
            except RosettaError:
                down(state)
                raise
            print(f"Prefect server ready at {api} (log {state / 'server.log'})")
        create_pools(env)
        if processes.running(state / "worker.pid"):
            print(f"a worker for pool 'local' already runs (pid file {state / 'worker.pid'}); now run:\n"
                  f"  export PREFECT_API_URL={api}")
            return 0
        worker = processes.start("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "local"], state, env)
        time.sleep(3)  # a worker has no health endpoint: alive after a few seconds is started
        if worker.poll() is not None:
            raise RosettaError(f"the worker for pool 'local' exited; see {state / 'worker.log'}")
    except RosettaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"worker for pool 'local' started (log {state / 'worker.log'}); now run:\n"
          f"  export PREFECT_API_URL={api}")
    if host in ("0.0.0.0", "::"):
        print(f"workers on other hosts: export PREFECT_API_URL=http://<this host's address>:{port}/api")
    return 0


def down(state: Path) -> int:
    for name in ("worker", "server"):
        if processes.stop(state / f"{name}.pid"):
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
