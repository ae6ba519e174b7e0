#!/bin/bash
# Paper 2, Fig. 5a on one GPU call (issue 14, deliverable 3): the score-match UNet (DDPM++ VectorUNet, width 64,
# EDM preconditioning and loss, batch 512, float32 with TF32 off) on MoLRG (K = 2, n = 48 as 3x4x4) over
# d in {3, 4, 5, 6} x N_k / d in {4, 8, 16, 32, 64, 128} (N = 2 * N_k, 24 models), trained 8 at a time as the
# members of one model (a MemberList: one CUDA graph, each member on its own stream), judged along training time.
#
#   reports/unet-molrg-grid/gpu_call.sh OUT SECONDS            # on the GPU (SECONDS: the hard budget, e.g. 450)
#   reports/unet-molrg-grid/gpu_call.sh OUT SECONDS --quick    # on a CPU: tiny net and budget, the same code path
#
# Results: OUT/unet-molrg-grid.tar.gz (the sweep's combined files, the groups' time axes and training records,
# the cells' metrics and time axes; never checkpoints or samples) and OUT/run.log. Everything is under OUT by
# SECONDS: the sweep stops training at its --time-limit (what is left after startup, minus the reserve for the
# combined results and packing), `timeout` interrupts it RESERVE_KILL seconds before the end, and packing follows.
# Budget: steps per model from an assumed aggregate rate (RATE images/s for 8 fp32 members at batch 512, below
# the 69,642 measured for 16 members at batch 256 in BENCHMARKS.md) and the overheads below; printed at the start.
set -u
OUT=${1:?usage: gpu_call.sh OUT SECONDS [--quick]}
BUDGET=${2:?usage: gpu_call.sh OUT SECONDS [--quick]}
MODE=${3:-gpu}
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }

RATE=50000          # images/s, all members together (assumed, conservative)
CELLS=24            # 4 values of d x 6 values of N_k / d
FIXED=160           # s: startup 15, per group of 8 (3 groups) 30 (plans, capture, final judgement, 8 cells' evaluation,
                    # checkpoints), combined results and figures 15, safety 40
AXIS=1.4            # training time x (1 + the time axis's evaluation cap, 0.4: 5 intermediate points of 8 members,
                    # about 5 s each if one member's judgement takes 0.6 s, half the pilot's 1.2 s full evaluation)
RESERVE_COMBINE=45  # s kept after the sweep's time limit: combined results, figures, packing
RESERVE_KILL=12     # s: `timeout` interrupts the sweep this long before the end; packing follows

if [ "$MODE" = "--quick" ]; then
  WORK=$(mktemp -d /tmp/molrg-grid.XXXXXX)
  STEPS=24
  BATCH=16
  CAP=1e6   # every point of the time axis, whatever this CPU's speed
  ARGS=(--device cpu --width 8 --batch $BATCH --eval-queries 16 --sample-seeds 16 --sampler-steps 6)
else
  WORK=/tmp/molrg-grid
  # checkpoints (0.5 GB per group of 8, one kept, ~17 written per group) in memory when /dev/shm has room
  SHM_GB=$(df -B1G --output=avail /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
  [ -w /dev/shm ] && [ "${SHM_GB:-0}" -ge 4 ] 2>/dev/null && WORK=/dev/shm/molrg-grid
  BATCH=512
  STEPS=$(python3 -c "print(max(50, int(($BUDGET - $FIXED) / $AXIS * $RATE / ($CELLS * $BATCH)) // 50 * 50))")
  CAP=0.4
  ARGS=(--device cuda --width 64 --batch $BATCH)
fi
LIMIT_MIN=$(python3 -c "print(round(max(0.1, ($BUDGET - $(elapsed) - $RESERVE_COMBINE - 10) / 60), 3))")
{
echo "== unet-molrg-grid: mode $MODE, budget $BUDGET s, work folder $WORK"
echo "commit ${MOGSIM_GIT_COMMIT:-unknown}; $(date -u)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "plan: $CELLS models x $STEPS steps x $BATCH = $(( STEPS * BATCH )) images per model; at an assumed $RATE" \
     "images/s (GPU) that is $(( CELLS * STEPS * BATCH / RATE )) s of training; sweep time limit $LIMIT_MIN min"
timeout -s INT $(( BUDGET - RESERVE_KILL - $(elapsed) )) python3 scripts/score_match_sweep.py "${ARGS[@]}" \
  --arch unet --components 2 --dim 48 --ranks 3,4,5,6 --nk-over-d 4,8,16,32,64,128 --seeds 0 \
  --steps "$STEPS" --lr 1e-3 --group-size 8 --eval-steps 6 --eval-cost-cap "$CAP" --no-report \
  --out "$WORK" --export "$WORK/export" --time-limit "$LIMIT_MIN"
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
(cd "$WORK" && tar -czf "$OUT/unet-molrg-grid.tar.gz" --exclude='*.pt' --exclude='*.npz' --exclude='*.lock' \
  export sweep_*/config.json sweep_*/groups/*/*.json sweep_*/groups/*/*.csv sweep_*/cells/*/metrics.json \
  sweep_*/cells/*/time.csv sweep_*/cells/*/config.json 2>>"$OUT/run.log")
echo "done at $(elapsed) s: $(ls -l "$OUT/unet-molrg-grid.tar.gz" | awk '{print $5}') bytes" | tee -a "$OUT/run.log"
