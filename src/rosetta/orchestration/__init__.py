"""What the Prefect flow (``flows/train_rosetta.py``) runs on: its hold on the DVC project (``dvc_project``) and
its report (``report``); and the team's servers (``team``, on a PostgreSQL cluster of its own: ``postgres``), run
as supervised processes (``processes``)."""
