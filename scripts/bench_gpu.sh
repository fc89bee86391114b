#!/usr/bin/env bash
# Train and inference benchmarks of all four nets on a GPU, bf16 + channels_last + GPU-resident crops; one table.
#
#   bash scripts/bench_gpu.sh            # on the GPU machine, from the repo root: ~4-6 min on an H100/H200
#   bash scripts/bench_gpu.sh --cpu      # the same steps on CPU at tiny sizes (~2-4 min): proves the script works
#   BENCH_OUT=/some/dir bash scripts/bench_gpu.sh   # keep the logs and JSON rows there (default: a temp dir)
#   BENCH_DEADLINE=300 bash scripts/bench_gpu.sh     # stop starting steps after 300 s (default 500), e.g. to fit a time limit
#
# No network, installs nothing: uses .venv/bin/python when the repo has one, else `python` (a symlink to
# another venv's python loses that venv: use a wrapper script that execs it).
# Steps: (1) synthetic photos -> a store (src/data/prepare.py), so training can take the GPU-resident path
# data=store data.on_device=true (src/data/device_patches.py) when the repo has it; (2) scripts/bench_train.py
# bare loop vs srlab's Trainer path at the project default (batch 16, patch 48) and at a GPU-sized batch
# (128 x 96 px); (3) scripts/bench_data.py, patches/s of each data path on the same store (on-device at
# batch 16 / 128 / 1024); (4) scripts/bench_infer.py raw / untiled / tiled upscaling of a 1024^2 LR image (x2).
# Full logs: $OUT/*.log. The table merges the JSON rows the two scripts write.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
case "${1:-}" in
  --cpu) MODE=cpu ;;
  "") ;;
  -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
  *) echo "usage: bash scripts/bench_gpu.sh [--cpu]" >&2; exit 2 ;;
esac

PY=.venv/bin/python
[ -x "$PY" ] || PY=python
OUT=${BENCH_OUT:-$(mktemp -d /tmp/bench_gpu.XXXXXX)}
mkdir -p "$OUT"
export PYTHONWARNINGS=ignore WANDB_MODE=offline

if [ "$MODE" = gpu ]; then
  DEV=cuda
  # A bounded first CUDA touch: a wedged driver otherwise hangs the script with no output.
  timeout -k 5 120 "$PY" -c "import torch; torch.zeros(1, device='cuda'); print('[bench_gpu]', torch.cuda.get_device_name())" \
    || { echo "no CUDA device answered $PY within 120 s; use --cpu to check the script on CPU" >&2; exit 1; }
  PHOTOS=64; SIZE="1000,700"
  TRAIN=(--repeats 3 --seconds 2 --warmup 5)
  TRAIN_BIG=(--batch 128 --patch 96)
  INFER=(--lr-size 1024 --repeats 3 --calls 3)
  DATA=(--seconds 2 --repeats 3 --device-batch-sizes 16 128 1024)
else
  DEV=cpu
  PHOTOS=24; SIZE="400,300"
  TRAIN=(--steps 2 --repeats 1 --warmup 1 --patch 24 --batch 4 --matmul-n 512)
  TRAIN_BIG=(--batch 8)
  INFER=(--quick)
  DATA=(--seconds 0.3 --repeats 1 --patch-sizes 24 --device-batch-sizes 16)
fi

# The GPU-resident data path, where this checkout has it.
STORE_ARGS=()
if [ -f src/data/device_patches.py ] && grep -q "on_device" conf/data/store.yaml 2>/dev/null; then
  echo "[bench_gpu] preparing a store of $PHOTOS synthetic photos in $OUT/store (data.on_device=true)"
  "$PY" - "$OUT" "$PHOTOS" "$SIZE" > "$OUT/prepare.log" 2>&1 <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, ".")
from src.data.prepare import prepare
from src.data.synthetic import write_jpegs

out, n, size = Path(sys.argv[1]), int(sys.argv[2]), tuple(int(v) for v in sys.argv[3].split(","))
photos = write_jpegs(out / "photos", n, size=size)
# Generous val/test shares: a small store must still have an image in every split.
prepare(photos, out / "store", val_fraction=0.15, test_fraction=0.15, progress=False)
EOF
  STORE_ARGS=(--store "$OUT/store" --on-device)
else
  echo "[bench_gpu] no data.on_device in this checkout: training reads the sample photos (data=sample)"
fi

DEADLINE=${BENCH_DEADLINE:-500}  # seconds for the whole script: each step gets what is left (at most 400 s)
run() {  # name, then the command; output to $OUT/name.log, a one-line status here
  local name=$1; shift
  local t0=$SECONDS left=$((DEADLINE - SECONDS))
  [ $left -gt 400 ] && left=400
  if [ $left -lt 20 ]; then echo "[bench_gpu] $name SKIPPED: BENCH_DEADLINE=$DEADLINE s reached" >&2; return 1; fi
  if timeout -k 5 $left "$@" > "$OUT/$name.log" 2>&1; then
    echo "[bench_gpu] $name done in $((SECONDS - t0)) s"
  else
    echo "[bench_gpu] $name FAILED (exit $?); last lines of $OUT/$name.log:" >&2
    tail -n 15 "$OUT/$name.log" >&2
    return 1
  fi
}

status=0
run train "$PY" scripts/bench_train.py --device "$DEV" --precision bf16-mixed "${TRAIN[@]}" "${STORE_ARGS[@]}" \
  --floor --json "$OUT/train.json" || status=1
run train_big "$PY" scripts/bench_train.py --device "$DEV" --precision bf16-mixed "${TRAIN[@]}" "${TRAIN_BIG[@]}" \
  "${STORE_ARGS[@]}" --json "$OUT/train_big.json" || status=1
if [ ${#STORE_ARGS[@]} -gt 0 ]; then
  # The device's crops must equal the CPU's (the tests check the CPU's against numpy).
  "$PY" - "$OUT/store" "$DEV" <<'EOF' || status=1
import sys

import torch

sys.path.insert(0, ".")
from src.data.crops import BatchCropper, CropPlans
from src.data.store import open_store

images = open_store(sys.argv[1], {"train": 48})["train"]
plans = CropPlans(images.shapes, 48, patches_per_image=64, batch_size=64, seed=0)
cpu, dev = BatchCropper(images, 48, torch.device("cpu")), BatchCropper(images, 48, torch.device(sys.argv[2]))
same = all(torch.equal(cpu.crops(plans[k]), dev.crops(plans[k]._replace(where=plans[k].where.to(sys.argv[2]))).cpu()) for k in range(20))
print(f"[bench_gpu] crops on {sys.argv[2]} equal the CPU's for 20 batches of 64: {same}")
sys.exit(0 if same else 1)
EOF
  run data "$PY" scripts/bench_data.py --device "$DEV" --photos "$OUT/photos" --store "$OUT/store" "${DATA[@]}" || status=1
fi
run infer "$PY" scripts/bench_infer.py --device "$DEV" --precision bf16-mixed --channels-last "${INFER[@]}" \
  --json "$OUT/infer.json" || status=1

"$PY" - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])


def rows(name):
    p = out / f"{name}.json"
    return {r["model"]: r for r in json.loads(p.read_text())} if p.exists() else {}


train, big, infer = rows("train"), rows("train_big"), rows("infer")
head = next((ln for ln in (out / "train.log").read_text().splitlines() if ln.startswith("device")), "") if (out / "train.log").exists() else ""
print(f"\n{head}")
cols = ["model", "b16 bare p/s", "b16 srlab p/s", "b16 ratio", "b16 floor", "big bare p/s", "big srlab p/s", "big ratio",
        "big GF/s", "big /ceil", "untiled MP/s", "tiled MP/s", "tiled/untiled", "tiled MB"]
table = []
for m in ("cnn_small", "cnn_medium", "cnn_deep", "waifu2x"):
    t, b, i = train.get(m, {}), big.get(m, {}), infer.get(m, {})
    table.append([m, t.get("bare p/s", "-"), t.get("srlab p/s", "-"), t.get("srlab/bare", "-"), t.get("floor/bare", "-"),
                  b.get("bare p/s", "-"), b.get("srlab p/s", "-"), b.get("srlab/bare", "-"),
                  b.get("GFLOP/s srlab", "-"), b.get("srlab/ceil", "-"),
                  i.get("untiled MP/s", "-"), i.get("tiled MP/s", "-"), i.get("tiled/untiled", "-"), i.get("tiled MB", "-")])
w = [max(len(c), *(len(str(r[k])) for r in table)) for k, c in enumerate(cols)]
print("  ".join(c.rjust(x) for c, x in zip(cols, w)))
for r in table:
    print("  ".join(str(v).rjust(x) for v, x in zip(r, w)))
print("bf16-mixed, channels_last; train: patches/s (b16 = batch 16 x 48 px, the project default; big = the GPU-sized batch),")
print("ratio = srlab Trainer path / bare loop; floor = a bare LightningModule / bare loop (Lightning's own cost); GF/s and /ceil vs a bf16 matmul; infer: output MP/s, x2, bf16 autocast")
EOF
if [ -f "$OUT/data.log" ]; then
  echo; echo "data path, patches/s (scripts/bench_data.py on the same store):"; grep -A20 '^path' "$OUT/data.log" || true
fi
echo "[bench_gpu] logs and JSON: $OUT"
exit $status
