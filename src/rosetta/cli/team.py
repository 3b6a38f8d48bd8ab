"""``rosetta team up|seed|down|status``: the team's servers (PostgreSQL, MLflow, Prefect and its workers, a DVC
remote) on this machine, as ``rosetta.orchestration.team`` runs them, and what the project has put on them
(``rosetta.orchestration.seed``)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "team", help="start, stop or show the team's servers (MLflow, Prefect, PostgreSQL, a DVC remote)",
        description="The team's servers on 127.0.0.1, as processes: PostgreSQL holding MLflow's and Prefect's "
                    "databases, an MLflow tracking server serving its own artifact store, a Prefect server with "
                    "the work pools local, gpu and team and two workers on team (each in its own clone of the "
                    "project), and a DVC remote folder set as the "
                    "project's default remote. State, logs and secrets stay in --folder; the first `up` records "
                    "the ports there. `seed` pushes the outputs dvc.lock records to the team's DVC remote and "
                    "copies the project's production model (from its own MLflow store) into the team's registry.")
    p.add_argument("action", choices=("up", "seed", "down", "status"))
    p.add_argument("--folder", type=Path, default=None, metavar="DIR",
                   help="where the servers keep their data, logs and secrets (default: <project>/.team)")
    p.add_argument("--project", type=Path, default=None, metavar="DIR",
                   help="the DVC project whose default remote is the team's (default: the one the working "
                        "directory is in, the nearest folder holding .dvc)")
    p.add_argument("--postgres-port", type=int, default=None, metavar="N", help="PostgreSQL's port (default 5433)")
    p.add_argument("--mlflow-port", type=int, default=None, metavar="N", help="MLflow's port (default 5010)")
    p.add_argument("--prefect-port", type=int, default=None, metavar="N", help="Prefect's port (default 4210)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="seconds to wait for each server to answer (default 300)")
    p.set_defaults(func=_team)


def _team(args: argparse.Namespace) -> int:
    from rosetta.orchestration.team import dvc_project, load_team, team_down, team_status, team_up

    project = dvc_project(args.project or Path.cwd())
    team = load_team(args.folder or project / ".team", project, postgres_port=args.postgres_port,
                     mlflow_port=args.mlflow_port, prefect_port=args.prefect_port)
    if args.action == "up":
        team_up(team, args.timeout)
    elif args.action == "seed":
        from rosetta.orchestration.seed import team_seed

        team_seed(team)
    elif args.action == "down":
        team_down(team)
    else:
        status = team_status(team)
        for name, ok in status.items():
            print(f"{name:15} {'running' if ok else 'stopped'}")
        return 0 if all(status.values()) else 1
    return 0
