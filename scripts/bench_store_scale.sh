#!/usr/bin/env bash
# Scale check of the store: 5,000 synthetic 1000x700 JPEGs -> `python -m src.data.prepare` (>= 10 GB
# decoded) -> one epoch of cnn_small from the store; prints wall time and peak RSS of each step, then
# the data-path benchmark on the big store. Everything it generates is deleted at the end (KEEP=1: kept;
# a re-run then reuses the photos and the store, and only trains and benchmarks again).
#
#   scripts/bench_store_scale.sh                 # work dir /tmp/srlab_scale (needs ~15 GB free)
#   N=500 scripts/bench_store_scale.sh /tmp/x    # a smaller run
#   KEEP=1 scripts/bench_store_scale.sh          # keep /tmp/srlab_scale for a re-run
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${1:-/tmp/srlab_scale}
N=${N:-5000}
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"
export WANDB_MODE=offline WANDB_SILENT=true

peak() {  # "<wall> s wall, <peak RSS> GB peak RSS" from a `/usr/bin/time -v` report
    awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]}
                /Maximum resident set size/ {r = $2}
                END {printf "%.1f s wall, %.2f GB peak RSS\n", s, r / 1048576}' "$1"
}

start=$(date +%s)
$PY -c "from src.data.synthetic import write_jpegs; write_jpegs('$WORK/photos', $N)"
echo "generate $N JPEGs: $(($(date +%s) - start)) s, $(du -sh "$WORK/photos" | cut -f1)"

/usr/bin/time -v -o "$WORK/prepare.time" $PY -m src.data.prepare "$WORK/photos" "$WORK/store" --quiet | head -2
echo "prepare: $(peak "$WORK/prepare.time"), store $(du -sh "$WORK/store" | cut -f1)"
/usr/bin/time -v -o "$WORK/prepare2.time" $PY -m src.data.prepare "$WORK/photos" "$WORK/store" --quiet | head -1
echo "prepare again (nothing to do): $(peak "$WORK/prepare2.time")"

rm -rf "$WORK/run"
/usr/bin/time -v -o "$WORK/train.time" $PY -m src.train model=cnn_small data=store data.path="$WORK/store" \
    data.patches_per_image=1 trainer.max_epochs=1 logger=csv hydra.run.dir="$WORK/run" > "$WORK/train.log" 2>&1 \
    || { tail -20 "$WORK/train.log"; exit 1; }
tail -7 "$WORK/train.log"
echo "train 1 epoch cnn_small from the store: $(peak "$WORK/train.time")"

$PY scripts/bench_data.py --photos "$WORK/photos" --store "$WORK/store" --seconds 3 --repeats 3
