# The interpreter of a stage: dvc.yaml runs `sh stages/python.sh stages/<x>.py`, so a stage needs no `python` on
# PATH. The first of: `python` on PATH (a user's environment, as `python stages/<x>.py` found), `python3` on PATH,
# the nearest .venv/bin/python at or above the working folder (the project's, also from a DVC experiment's copy
# below .dvc/tmp); stages/_interpreter.py then turns to the project's .venv when that interpreter lacks rosetta.
for name in python python3; do
    if command -v "$name" >/dev/null 2>&1; then
        exec "$name" "$@"
    fi
done
folder=$(pwd)
while :; do
    if [ -x "$folder/.venv/bin/python" ]; then
        exec "$folder/.venv/bin/python" "$@"
    fi
    [ "$folder" = / ] && break
    folder=$(dirname "$folder")
done
echo "error: no Python for the stage: neither python nor python3 is on PATH, and no .venv/bin/python is in $(pwd) or a folder above it; run \`make install\` in the project, or put a Python with rosetta on PATH" >&2
exit 2
