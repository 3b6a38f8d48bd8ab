# The interpreter of a stage: dvc.yaml runs `sh stages/python.sh stages/<x>.py`, so a stage runs under a Python that
# rosetta is installed in however `dvc` was started (`.venv/bin/dvc repro` with no `python` on PATH, or with one
# that lacks the project). The first such of: `python` on PATH (a user's environment, as `python stages/<x>.py`
# found), `python3` on PATH, the nearest .venv/bin/python at or above the working folder (the project's, also from a
# DVC experiment's copy below .dvc/tmp). Installed, not merely importable: a bare Python finds the package's source
# through PYTHONPATH but not its dependencies. Without one it ends in one sentence saying what to do.
has_rosetta() {
    "$1" -c 'import importlib.metadata as m; m.distribution("rosetta-pipeline")' 2>/dev/null
}
tried=""  # the Pythons found that rosetta is not installed in
for name in python python3; do
    path=$(command -v "$name") || continue
    has_rosetta "$path" && exec "$path" "$@"
    tried="${tried:+$tried, }$path"
done
folder=$(pwd)
venv=""
while :; do
    if [ -x "$folder/.venv/bin/python" ]; then
        venv="$folder/.venv/bin/python"
        has_rosetta "$venv" && exec "$venv" "$@"
        tried="${tried:+$tried, }$venv"
        break
    fi
    [ "$folder" = / ] && break
    folder=$(dirname "$folder")
done
if [ -z "$tried" ]; then
    echo "error: no Python for the stage: neither python nor python3 is on PATH, and no .venv/bin/python is in $(pwd) or a folder above it; run \`make install\` in the project, or put a Python with rosetta on PATH" >&2
elif [ -z "$venv" ]; then
    echo "error: no Python for the stage has rosetta installed: not $tried, and no .venv/bin/python is in $(pwd) or a folder above it; run \`make install\` in the project, or put the environment rosetta is installed in first on PATH" >&2
else
    echo "error: no Python for the stage has rosetta installed: not $tried; run \`make install\` in the project, or put the environment rosetta is installed in first on PATH" >&2
fi
exit 2
