#!/usr/bin/env bash
# Wheels the GPU machine lacks (its image has torch, torchvision, timm, lightning, typer, rich,
# matplotlib, pyyaml, but not pydantic or pycocotools), downloaded here into .whl/ (git-ignored
# through .git/info/exclude) for Python 3.12 on manylinux x86_64.
#
#   bash bench/gpu_wheels.sh            # here, once
#   then every device call carries .whl (and the data folder) and starts with:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD || exit; SEMPAIRS_DATA=$PWD/data python3 -m sempairs.cli ...
set -euo pipefail
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d .whl \
  pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 pycocotools==2.0.10
ls -la .whl
