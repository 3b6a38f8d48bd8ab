#!/usr/bin/env bash
# Installs the Debian packages listed in FILE (one per line, # comments) that are not installed yet: the
# synthetic renderer's fonts (data.synth.font_packages, `make install`) and the screenshot's chromium
# (packages/debian-screenshot.txt, `make mlflow-screenshot`); it does nothing when all are there.
set -euo pipefail
list=${1:?usage: install_debian_packages.sh FILE}
mapfile -t wanted < <(sed 's/#.*//' "$list" | tr -s ' \t' '\n' | grep -v '^$' || true)
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: ${#missing[@]} Debian packages listed in $list (${missing[*]}) are not installed and this machine" \
       "has no apt-get; install them another way (for fonts: or set data.synth.font_packages to \"\" in params.yaml)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing ${#missing[@]} Debian packages listed in $list"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
