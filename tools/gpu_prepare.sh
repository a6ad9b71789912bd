#!/usr/bin/env bash
# Run here, before a GPU session's device call: puts into .gpu/ (ignored through .git/info/exclude)
# what the device machine lacks and cannot fetch — a copy of ../shared (models, data, tools: about
# 47 MB of the 64 MiB a call carries) and wheels of the pure-Python packages its image does not have
# (onnx-graphsurgeon; spikingjelly for the speed comparison). Then one call does everything:
#   run(command="bash tools/gpu_check.sh", carry=[".gpu"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/shared .gpu/whl
cp -r ../shared/models ../shared/data ../shared/tools .gpu/shared/
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  onnx-graphsurgeon==0.6.1 spikingjelly==2.0.0
du -sh .gpu
