#!/usr/bin/env bash
# The slice's real-scale run (issue 2): SimCLR ResNet-18 (small stem), CIFAR-10 32 px, batch 512,
# 100 epochs, AP (all 50,000 images) and SP from labels (25,000 pairs = every image once; uses the
# labels, so not a self-supervised result); kNN (k=200, t=0.1) on the 10,000 test images.
# Resumable: run it again after a time limit and each arm continues from its last checkpoint.
#
#   On a GPU machine, from the repository root, with CIFAR-10 in $SEMPAIRS_DATA:
#     bash bench/slice_gpu.sh [OUT_DIR]
#   Results: OUT_DIR/{ap,sp}/eval/knn.json and history.csv (images_per_s per epoch).
set -euo pipefail
out=${1:-runs/slice}
run() { python3 -m sempairs.cli train configs/simclr_cifar10.yaml out_dir="$out" "$@" --resume; }
run name=ap pairs.source=augmented
run name=sp pairs.source=labels
for arm in ap sp; do
  echo "== $arm"; cat "$out/$arm/eval/knn.json"
  python3 - "$out/$arm/history.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
speeds = sorted(float(r["images_per_s"]) for r in rows[1:]) or [float(rows[0]["images_per_s"])]
print(f"epochs {len(rows)}  median img/s {speeds[len(speeds) // 2]:.0f}")
PY
done
