#!/bin/bash
# p2b's one GPU call: (a) benchmarks/bench_jacobian.py on unet-64 (float32, TF32 off, as the command runs);
# (b) a pilot of the UNet-on-MoLRG run (score-match sweep, arch unet, 2 cells, 1000 steps x 512). Ends by ~185 s.
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1
{
echo "commit $(cat .commit)"; date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "== bench_jacobian: unet-64, 18 levels, float32 (TF32 off) =="
timeout -s INT 95 python3 benchmarks/bench_jacobian.py --samples 3 --budget-s 75 --out $OUT/bench_jacobian.json
echo "bench rc $? elapsed $SECONDS s"
left=$((185 - SECONDS))
tl=$(python3 -c "print(round(max(0.2, ($left - 30) / 60), 2))")
echo "== pilot: score-match --arch unet, K=2 r=3, N=24,384, 1000 steps x 512; $left s left, --time-limit $tl min =="
timeout -s INT $((left - 4)) python3 scripts/score_match_sweep.py --device cuda --arch unet --components 2 --ranks 3 \
  --ns 24,384 --steps 1000 --batch 512 --no-report --out /tmp/pilot --export $OUT/pilot --time-limit $tl
echo "pilot rc $? elapsed $SECONDS s"
python3 - <<'EOF'
import glob, json
for f in sorted(glob.glob('/tmp/pilot/*/cells/*/metrics.json')):
    m = json.load(open(f)); t = m['training']
    print(f.split('/')[-2], 'train_s', round(t['seconds'], 2), 'steps', t['steps_done'], 'eval_s',
          round(m['eval_seconds'], 2), 'copy', m['copy_fraction_net'], 'on_subspace', m['on_subspace_fraction_net'],
          'loss_last', t['loss_last'], m['verdict'])
EOF
echo "done elapsed $SECONDS s"
} 2>&1 | tee $OUT/run.log
