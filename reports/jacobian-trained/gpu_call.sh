#!/usr/bin/env bash
# Jacobian ranks of TRAINED UNets along sampler trajectories (paper 2, Fig. 3; issue 14), in one short GPU call:
#   reports/jacobian-trained/gpu_call.sh OUT SECONDS [--quick] [--cifar-only IMAGES]
# 1. Two Fig. 5a UNets on MoLRG (n = 48 as 3x4x4, K = 2, d = 3), 800 steps of 512 (0.41 Mimg, the grid's budget of
#    reports/unet-molrg-grid), one memorizing (N_k / d = 4) and one generalizing (N_k / d = 128); then
#    `mogsim jacobian-rank --run` on each (16 trajectories, 18 levels, float32 without TF32).
# 2. If time is left: unet-64 on the whole CIFAR-10 training set for a short budget (bf16, CUDA graph, EDM, lr 1e-3,
#    a briefly trained net, not a converged one), then `mogsim jacobian-rank --run` on trajectories 0-1 (0-2 in --cifar-only) with
#    JAC_ARGS (default in --cifar-only: --precision bf16 --max-batch 3072) and a time limit.
# --cifar-only IMAGES: part 2 only, IMAGES training images (bf16, not compiled: 2,825 images/s on an H200, so
#    1,000,000 images take about 354 s; the script refuses IMAGES that leave under 110 s for the Jacobians:
#    3 trajectories at 25.6 s plus a 9.4-s warm-up, BENCHMARKS.md). The Jacobians go level by level over all
#    trajectories and are written after every level, so the time limit cuts levels, never a trajectory's half.
#    Training checkpoints every 1,000 steps, so an interrupted training still leaves a net to analyse.
# Results (small files: ranks.csv, metrics.json, violins, the runs' configs and logs) in OUT/jacobian-trained.tar.gz.
# --quick: the same path on the CPU with tiny sizes (a smoke test of this script).
set -uo pipefail
OUT=${1:?OUT}; BUDGET=${2:?SECONDS}; shift 2; QUICK=0; CIFAR_ONLY=0; IMAGES=
while (( $# )); do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --cifar-only) CIFAR_ONLY=1; IMAGES=${2:?--cifar-only IMAGES}; shift 2 ;;
    *) echo "gpu_call.sh: error: unknown option $1 (--quick, --cifar-only IMAGES)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}; START=$SECONDS
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
LOG=$OUT/run.log
left() { echo $(( BUDGET - (SECONDS - START) )); }
CLI=("$PY" -m mogsim.cli.app)
if (( QUICK )); then
  DEV=cpu; SM=(--steps 20 --batch 32 --width 8 --sample-seeds 16 --eval-queries 32); SEEDS=0-1
  TRAIN_IMAGES=${IMAGES:-256}
  TRAIN=(--arch unet-tiny --n 64 --images $TRAIN_IMAGES --batch 32 --checkpoint-every 4); CSEEDS=0; CIFAR_NEEDS=20
  JEXTRA=(--sampler-steps 2 --solver euler); JAC_RESERVE=5; RATE=10
else
  DEV=cuda; SM=(--steps 800 --batch 512 --width 64); SEEDS=0-15
  TRAIN_IMAGES=${IMAGES:-100000}
  TRAIN=(--arch unet-64 --images $TRAIN_IMAGES --batch 128 --no-compile --checkpoint-every 1000)
  CSEEDS=0-1; CIFAR_NEEDS=120; JEXTRA=(); JAC_RESERVE=70; RATE=2825
fi
if (( CIFAR_ONLY )); then
  CSEEDS=0-2; CIFAR_NEEDS=0; (( QUICK )) || JAC_RESERVE=110
  JAC_ARGS=${JAC_ARGS:---precision bf16 --max-batch 3072}
  need=$(( 25 + IMAGES / RATE + JAC_RESERVE ))
  if (( ! QUICK && need > BUDGET )); then
    echo "gpu_call.sh: error: --cifar-only $IMAGES needs about $need s (25 s start-up, $RATE images/s, $JAC_RESERVE s of Jacobians), more than SECONDS = $BUDGET; lower IMAGES" >&2
    exit 2
  fi
fi
W=${WORK:-$(mktemp -d /tmp/jt.XXXXXX)}; mkdir -p "$OUT"
echo "jacobian-trained: budget $BUDGET s, commit ${MOGSIM_GIT_COMMIT:-?}, $(date -u)" | tee -a "$LOG"
(( CIFAR_ONLY )) && NKS=() || NKS=(4 128)
for nk in "${NKS[@]}"; do
  n=$(( 2 * nk * 3 ))
  echo "== MoLRG UNet d = 3, N_k/d = $nk (N = $n), $(left) s left" | tee -a "$LOG"
  timeout $(( $(left) - 20 )) "${CLI[@]}" score-match --arch unet --rank 3 --components 2 --n $n --lr 1e-3 "${SM[@]}" \
    --device $DEV --out "$W/sm" --quiet >> "$LOG" 2>&1
  run=$(ls -d "$W"/sm/*_N${n}_* | head -1)
  timeout $(( $(left) - 20 )) "${CLI[@]}" jacobian-rank --run "$run" --seeds $SEEDS --device $DEV --out "$W/jac" \
    --quiet "${JEXTRA[@]}" >> "$LOG" 2>&1
  echo "   exit $? at $(( SECONDS - START )) s" | tee -a "$LOG"
done
if (( $(left) >= CIFAR_NEEDS )); then
  echo "== CIFAR-10 ${TRAIN[1]}: $TRAIN_IMAGES training images, $(left) s left" | tee -a "$LOG"
  DATA=${CIFAR_DATA:-.gpu/gap/.gpu-data/cifar10-train}
  timeout -s INT $(( $(left) - JAC_RESERVE )) "${CLI[@]}" train --data "$DATA" "${TRAIN[@]}" --precond edm \
    --lr 1e-3 --lr-warmup-images 0 --keep-checkpoints 1 --no-progress --device $DEV --out "$W/cifar" >> "$LOG" 2>&1
  echo "   train exit $? at $(( SECONDS - START )) s" | tee -a "$LOG"
  lim=$(awk "BEGIN{print ($(left) - 15) / 60}")
  timeout $(( $(left) - 8 )) "${CLI[@]}" jacobian-rank --run "$W/cifar" --seeds $CSEEDS --device $DEV --out "$W/jac" \
    --time-limit "$lim" --quiet "${JEXTRA[@]}" ${JAC_ARGS:-} >> "$LOG" 2>&1
  echo "   jacobian exit $? at $(( SECONDS - START )) s" | tee -a "$LOG"
else
  echo "== CIFAR-10 part skipped ($(left) s left)" | tee -a "$LOG"
fi
(cd "$W" && find . \( -name '*.pt' -o -name checkpoints -prune -o -name '*.npz' \) -prune -o -type f \
  \( -name '*.json' -o -name '*.csv' -o -name '*.png' -o -name '*.pdf' \) -print0 |
  tar czf "$OUT/jacobian-trained.tar.gz" --null -T -)
echo "done at $(( SECONDS - START )) s: $(du -h "$OUT/jacobian-trained.tar.gz" | cut -f1)" | tee -a "$LOG"
