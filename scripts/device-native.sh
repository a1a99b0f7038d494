#!/usr/bin/env bash
# Runs q4gsw on a lent GPU machine that has python3 + numpy but no wgpu and no Vulkan loader, and
# cannot download anything. Bring (ignored, carried) folders:
#   .whl/  wheels: wgpu, cffi, pycparser, sniffio, rendercanvas, simpleeval, filelock (cp312)
#   .gl/   Debian .debs: libvulkan1 and the X11/EGL libraries wgpu-native links against
#   .fx/   fixtures from `python -m q4gsw export --out .fx --without-pte --max-golden-mib 4`
# Usage: scripts/device-native.sh [q4gsw CLI args...]   (default: the required tier on `native`)
#        scripts/device-native.sh SCRIPT.py [args...]      (a python script, e.g. scripts/bandwidth_probe.py)
set -euo pipefail
mkdir -p /tmp/gl
for deb in .gl/*.deb; do dpkg -x "$deb" /tmp/gl; done
export LD_LIBRARY_PATH="/tmp/gl/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$nvidia_icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES="$nvidia_icd"
fi
if [ $# -eq 0 ]; then
    set -- run --backend native --fixtures .fx --tier required --results "${OUT:-results}/native-required"
fi
case "$1" in
    *.py) exec python3 "$@" ;;
esac
python3 -m q4gsw "$@"
