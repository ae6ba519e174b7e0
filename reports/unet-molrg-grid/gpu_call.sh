#!/bin/bash
# Paper 2, Fig. 5a on one GPU call (issue 14): the score-match UNet (DDPM++ VectorUNet, width 64, EDM
# preconditioning and loss, batch 512, float32 with TF32 off) on MoLRG (K = 2, n = 48 as 3x4x4), trained GROUP
# models at a time as the members of one model (a MemberList: one CUDA graph, each member on its own stream), judged
# along training time.
#
#   reports/unet-molrg-grid/gpu_call.sh OUT SECONDS [--quick] [options]
#     --ranks 3,6                  values of d                      (default 3,4,5,6)
#     --nk-over-d 16,23,...,181    values of N_k / d (N = 2 N_k)    (default 4,8,16,32,64,128)
#     --steps S                    Adam steps of 512 per model      (default: the most that SECONDS allows)
#     --group-size G               models per training group        (default 8)
#     --eval-steps E               time-axis points, log-spaced     (default 6)
#     --shard i/M                  train only groups i, i+M, ...    (default: all groups)
#     --plan-only                  print the plan and the predicted seconds, run nothing
#
# Calls of one session cannot resume each other (checkpoints stay on the device), so a call must finish every group
# it trains: before starting, the script predicts the call's seconds (training at RATE images/s for 8 members, plus
# the per-group, start-up and reserve seconds below) and exits 2 without training when they exceed SECONDS.
# The settling run of the grid README ("The run that would settle it") is two calls of the same options with
# --shard 0/2 and --shard 1/2; unpack.sh merges them.
#
# Results: OUT/unet-molrg-grid.tar.gz (the sweep's combined files, the groups' time axes and training records,
# the cells' folders: config, metrics, time axis, per-sigma errors and per-sample arrays samples.npz (the net's
# samples, nearest-neighbour distances and indices: any copy rule can be recomputed from them); never checkpoints)
# and OUT/run.log. Everything is under OUT by SECONDS: the sweep stops training at its --time-limit, `timeout`
# interrupts it RESERVE_KILL seconds before the end, and packing follows.
set -u
usage="usage: gpu_call.sh OUT SECONDS [--quick] [--ranks L] [--nk-over-d L] [--steps S] [--group-size G] [--eval-steps E] [--shard i/M] [--plan-only]"
OUT=${1:?$usage}
BUDGET=${2:?$usage}
shift 2
MODE=gpu RANKS=3,4,5,6 NKD=4,8,16,32,64,128 STEPS= GROUP=8 EVAL_STEPS=6 SHARD= PLAN_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=--quick; shift ;;
    --ranks) RANKS=${2:?$usage}; shift 2 ;;
    --nk-over-d) NKD=${2:?$usage}; shift 2 ;;
    --steps) STEPS=${2:?$usage}; shift 2 ;;
    --group-size) GROUP=${2:?$usage}; shift 2 ;;
    --eval-steps) EVAL_STEPS=${2:?$usage}; shift 2 ;;
    --shard) SHARD=${2:?$usage}; shift 2 ;;
    --plan-only) PLAN_ONLY=1; shift ;;
    *) echo "gpu_call.sh: error: unknown option $1; $usage" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }

RATE=50000          # images/s, 8 members together: below the 56,650-58,282 measured in this folder's 800-step call
                    # (gaps included) and the 80,800 of its timed step
STARTUP=15          # s: imports, plans, the device's first kernels
PER_GROUP=40        # s per group: warm-up and capture 2, time-axis evaluations (about 3.5 s a point), the final
                    # evaluation of its cells 5, checkpoints and the rest
RESERVE_COMBINE=45  # s kept after the sweep's time limit: combined results, figures, packing
RESERVE_KILL=12     # s: `timeout` interrupts the sweep this long before the end; packing follows

count() { echo "$1" | tr ',' '\n' | grep -c .; }
CELLS=$(( $(count "$RANKS") * $(count "$NKD") ))
GROUPS_ALL=$(( (CELLS + GROUP - 1) / GROUP ))
MINE=$GROUPS_ALL
if [ -n "$SHARD" ]; then
  I=${SHARD%/*}; M=${SHARD#*/}
  MINE=$(( (GROUPS_ALL - I + M - 1) / M ))
fi
MEMBERS=$(( CELLS < GROUP ? CELLS : GROUP ))
SHARD_ARGS=(); [ -n "$SHARD" ] && SHARD_ARGS=(--shard "$SHARD")

if [ "$MODE" = "--quick" ]; then
  WORK=$(mktemp -d /tmp/molrg-grid.XXXXXX)
  STEPS=${STEPS:-24}
  BATCH=16
  CAP=1e6   # every point of the time axis, whatever this CPU's speed
  ARGS=(--device cpu --width 8 --batch $BATCH --eval-queries 16 --sample-seeds 16 --sampler-steps 6)
else
  WORK=/tmp/molrg-grid
  # checkpoints (0.5 GB per group of 8, one kept) in memory when /dev/shm has room
  SHM_GB=$(df -B1G --output=avail /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
  [ -w /dev/shm ] && [ "${SHM_GB:-0}" -ge 4 ] 2>/dev/null && WORK=/dev/shm/molrg-grid
  BATCH=512
  FIXED=$(( STARTUP + MINE * PER_GROUP + RESERVE_COMBINE + RESERVE_KILL ))
  # a group of MEMBERS trains at RATE * MEMBERS / 8 images/s (the rate grows with the members; this is conservative)
  [ -z "$STEPS" ] && STEPS=$(python3 -c "print(max(50, int(($BUDGET - $FIXED) * $RATE / 8 / ($MINE * $BATCH)) // 50 * 50))")
  PREDICTED=$(python3 -c "print(round($FIXED + $MINE * 8 * $STEPS * $BATCH / $RATE))")
  if [ "$PREDICTED" -gt "$BUDGET" ]; then
    echo "gpu_call.sh: error: $MINE group(s) x $MEMBERS models x $STEPS steps need about $PREDICTED s, more than SECONDS = $BUDGET; lower --steps or train fewer groups per call (--shard)" >&2
    exit 2
  fi
  CAP=0.4
  ARGS=(--device cuda --width 64 --batch $BATCH)
  if [ "$PLAN_ONLY" = 1 ]; then
    echo "plan: $MINE of $GROUPS_ALL group(s) x $MEMBERS models x $STEPS steps x $BATCH = $(( STEPS * BATCH )) images per model;" \
         "about $PREDICTED s of SECONDS = $BUDGET (training at $RATE images/s for 8 members, $FIXED s fixed)"
    exit 0
  fi
fi
mkdir -p "$OUT"
LIMIT_MIN=$(python3 -c "print(round(max(0.1, ($BUDGET - $(elapsed) - $RESERVE_COMBINE - 10) / 60), 3))")
{
echo "== unet-molrg-grid: mode $MODE, budget $BUDGET s, work folder $WORK"
echo "commit ${MOGSIM_GIT_COMMIT:-unknown}; $(date -u)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "plan: d in {$RANKS} x N_k/d in {$NKD}: $CELLS models in $GROUPS_ALL group(s) of up to $GROUP, this call trains" \
     "$MINE (shard ${SHARD:-all}); $STEPS steps x $BATCH = $(( STEPS * BATCH )) images per model;" \
     "${PREDICTED:-?} s predicted at $RATE images/s for 8 members; sweep time limit $LIMIT_MIN min"
timeout -s INT $(( BUDGET - RESERVE_KILL - $(elapsed) )) python3 scripts/score_match_sweep.py "${ARGS[@]}" \
  --arch unet --components 2 --dim 48 --ranks "$RANKS" --nk-over-d "$NKD" --seeds 0 \
  --steps "$STEPS" --lr 1e-3 --group-size "$GROUP" --eval-steps "$EVAL_STEPS" --eval-cost-cap "$CAP" --no-report \
  --out "$WORK" --export "$WORK/export" --time-limit "$LIMIT_MIN" "${SHARD_ARGS[@]}"
echo "sweep rc $? at $(elapsed) s"
python3 - "$WORK" <<'EOF'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + '/sweep_*/groups/g*/training.json')):
    t = json.load(open(f))
    ex, wall = t.get('execution') or {}, t.get('wall_s') or float('nan')
    seen = t['members'] * t['steps_this_launch'] * t['images'] / max(t['steps'], 1)
    print(f.split('/')[-2], 'members', t['members'], 'steps', t['steps'], 'training s', round(wall, 1),
          'images/s, all members', round(seen / wall), 'streams', ex.get('streams'), 'graph', ex.get('cuda_graph'),
          'fallback', ex.get('graph_fallback'), 'precision', ex.get('precision'))
for f in sorted(glob.glob(sys.argv[1] + '/sweep_*/sweep_collapse.json')):
    c = json.load(open(f))['final']
    print('GL reaches', c['level'], 'at N_k/d:', {d: (v['crossing'], v['status']) for d, v in c['per_d'].items()},
          'pooled', (c['pooled'] or {}).get('crossing'), (c['pooled'] or {}).get('status'))
EOF
echo "packing at $(elapsed) s"
} 2>&1 | tee "$OUT/run.log"
(cd "$WORK" && tar -czf "$OUT/unet-molrg-grid.tar.gz" --exclude='*.pt' --exclude='*.lock' \
  export sweep_*/config.json sweep_*/groups/*/*.json sweep_*/groups/*/*.csv sweep_*/cells 2>>"$OUT/run.log")
echo "done at $(elapsed) s: $(ls -l "$OUT/unet-molrg-grid.tar.gz" | awk '{print $5}') bytes" | tee -a "$OUT/run.log"
