"""The project's interpreter for a stage, however ``dvc`` was started: dvc.yaml runs ``sh stages/python.sh
stages/<x>.py``, which takes ``python`` (or ``python3``) on PATH first. A stage imports this module before
``rosetta``: when that interpreter cannot import ``rosetta`` (``.venv/bin/dvc repro`` with the venv not on PATH, a
dvc installed elsewhere), the stage runs again under the project's ``.venv/bin/python`` (``make install`` makes it;
the nearest at or above the stage's folder, so a DVC experiment's copy below ``.dvc/tmp`` finds it), with the same
arguments; without one it ends in one sentence saying what to do.

It chooses the interpreter only, never what a stage computes, so it is no dep of a stage in dvc.yaml.
"""
import importlib.util
import os
import sys
from pathlib import Path

_VENV_PYTHON = next((p / ".venv" / "bin" / "python" for p in Path(__file__).resolve().parents[1:]
                     if (p / ".venv" / "bin" / "python").is_file()),
                    Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python")
_SWITCHED = "ROSETTA_STAGE_INTERPRETER"  # set on the switch, so a venv that cannot import rosetta is no loop


def _ensure_rosetta() -> None:
    if importlib.util.find_spec("rosetta") is not None:
        return
    if _VENV_PYTHON.is_file() and not os.environ.get(_SWITCHED):
        os.environ[_SWITCHED] = str(_VENV_PYTHON)
        os.execv(_VENV_PYTHON, [str(_VENV_PYTHON), *sys.argv])
    where = f"nor can {_VENV_PYTHON}" if _VENV_PYTHON.is_file() else f"and there is no {_VENV_PYTHON}"
    print(f"error: {sys.executable} (the Python on PATH) cannot import rosetta, {where}; run "
          "`make install` in the project, or put the environment rosetta is installed in first on PATH",
          file=sys.stderr)
    sys.exit(2)


_ensure_rosetta()
