"""The project's interpreter for a stage, however ``dvc`` was started: dvc.yaml runs ``python stages/<x>.py``, and
``python`` is whatever the shell finds first on PATH. A stage imports this module before ``rosetta``: when that
interpreter cannot import ``rosetta`` (``.venv/bin/dvc repro`` with the venv not on PATH, a dvc installed
elsewhere), the stage runs again under the project's ``.venv/bin/python`` (``make install`` makes it), with the
same arguments; without one it ends in one sentence saying what to do.

It chooses the interpreter only, never what a stage computes, so it is no dep of a stage in dvc.yaml.
"""
import importlib.util
import os
import sys
from pathlib import Path

_VENV_PYTHON = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
_SWITCHED = "ROSETTA_STAGE_INTERPRETER"  # set on the switch, so a venv that cannot import rosetta is no loop


def _ensure_rosetta() -> None:
    if importlib.util.find_spec("rosetta") is not None:
        return
    if _VENV_PYTHON.is_file() and not os.environ.get(_SWITCHED):
        os.environ[_SWITCHED] = str(_VENV_PYTHON)
        os.execv(_VENV_PYTHON, [str(_VENV_PYTHON), *sys.argv])
    where = f"nor can {_VENV_PYTHON}" if _VENV_PYTHON.is_file() else f"and there is no {_VENV_PYTHON}"
    print(f"error: {sys.executable} (the `python` dvc found on PATH) cannot import rosetta, {where}; run "
          "`make install` in the project, or put the environment rosetta is installed in first on PATH",
          file=sys.stderr)
    sys.exit(2)


_ensure_rosetta()
