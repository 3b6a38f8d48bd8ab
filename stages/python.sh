# The interpreter of a stage: dvc.yaml runs `sh stages/python.sh stages/<x>.py`, so a stage runs under a Python that
# imports rosetta however `dvc` was started (`.venv/bin/dvc repro` with no `python` on PATH, or with one that lacks
# the project). The first that imports rosetta of: `python` on PATH (a user's environment, as `python stages/<x>.py`
# found), `python3` on PATH, the nearest .venv/bin/python at or above the working folder (the project's, also from a
# DVC experiment's copy below .dvc/tmp). Without one it ends in one sentence saying what to do.
imports_rosetta() {
    "$1" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("rosetta") is None)' 2>/dev/null
}
tried=""  # the Pythons found that cannot import rosetta
for name in python python3; do
    path=$(command -v "$name") || continue
    imports_rosetta "$path" && exec "$path" "$@"
    tried="${tried:+$tried, }$path"
done
folder=$(pwd)
venv=""
while :; do
    if [ -x "$folder/.venv/bin/python" ]; then
        venv="$folder/.venv/bin/python"
        imports_rosetta "$venv" && exec "$venv" "$@"
        tried="${tried:+$tried, }$venv"
        break
    fi
    [ "$folder" = / ] && break
    folder=$(dirname "$folder")
done
if [ -z "$tried" ]; then
    echo "error: no Python for the stage: neither python nor python3 is on PATH, and no .venv/bin/python is in $(pwd) or a folder above it; run \`make install\` in the project, or put a Python with rosetta on PATH" >&2
elif [ -z "$venv" ]; then
    echo "error: no Python for the stage can import rosetta: not $tried, and no .venv/bin/python is in $(pwd) or a folder above it; run \`make install\` in the project, or put the environment rosetta is installed in first on PATH" >&2
else
    echo "error: no Python for the stage can import rosetta: not $tried; run \`make install\` in the project, or put the environment rosetta is installed in first on PATH" >&2
fi
exit 2
