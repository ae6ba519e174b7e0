#!/usr/bin/env bash
# The GPU runs of `mogsim cifar-optimal-gap` (issue 12), each in ONE call of at most ~9 minutes.
#
#   benchmarks/run_cifar_gap_gpu.sh [--quick] [--memorize [--n N] | --exponent | --grid [--ns LIST] |
#                                    --grid-wide [--ns LIST] | --widths] DATA RESULTS [SECONDS]
#
# (the flags in any order, before DATA; at most one mode.)
#
# --memorize runs stage A alone, longer: unet-64 at N = 64 (or --n N) to 1.2 Mimg, evaluated at 150k, 300k, 450k,
# 600k, 800k, 1.0M and 1.2M images, in the engine's CUDA default arithmetic (bf16, the step captured in a CUDA graph)
# with --compile (one warm-up of 85-131 s for the whole cell): the run that looks for the memorization regime within
# one call. `--memorize --n 128` is the memorization-time exponent's upper side: 251 s training at 4,778 images/s
# + 85-131 s compile + 7 evaluations (~50 s) + data, start-up and merge (~30 s) = 420-470 s; use SECONDS = 540.
#
# --exponent runs the memorization-time cells for the fit against N (the memorize run's N = 64 cell is the third
# N): unet-64 at N = 16 to 160k images (points 20k, 40k, 70k, 110k, 160k), then at N = 32 to 260k images (points
# 40k, 70k, 110k, 170k, 260k), with the memorize run's recipe and evaluation but bf16 with the CUDA-graph step and
# WITHOUT compile (short cells: a compile costs 85-131 s, the graph-only step runs ~2,825 images/s), then one merge,
# then, if at least 60 s are left, benchmarks/bench_cifar_eval.py at N = 32,768 (bench_cifar_eval.json; issue 12,
# deliverable 5; it writes the JSON before timing bf16 training with the CUDA-graph step for at most ~10 s). Use SECONDS = 420 for a call of 450 s.
#
# --grid runs the issue's grid at one fixed budget: unet-64 at N = 128, 256, 512, 1024, 2048 and 4096 (one process,
# ascending N), each to 98,304 images with points at 49,152 and 98,304, bf16 with the CUDA-graph step without compile
# (a compile per cell would cost 6 x 85-131 s). Per cell: 35 s training at 2,825 images/s + ~6 s warm-up + ~21 s
# for two evaluations (13 + 7) + ~2 s references = ~64 s; with data, start-up and merge ~425 s. Use SECONDS = 520
# (the stage's limit is then 440 s; a late N = 4096 cell loses its last point first). Under a memorization time
# ~linear in N (crossing 0.5 near 440k images at N = 128) no cell copies at this budget: it measures the
# non-copying side of Fig. 4 (RP to the optimum, GL, per-sigma distances) against N at equal training.
# `--ns LIST` (ascending, comma-separated) replaces the N of --grid or --grid-wide.
#
# --grid-wide is --grid with BOTH widths: unet-64 and unet-128 in one process, cells in the order N (ascending), then
# unet-64, then unet-128, at the same budget and points (98,304 images; 49,152 and 98,304) and so on the same images,
# so that the merge computes RP between widths at every N (it needs both nets' samples, which stay on the device:
# both widths of an N must share a call). Default N: 64 .. 2048 (N = 4096 of both widths is the --widths call's
# W4096 stage, the same cells); a call of ~10 minutes fits two N, so the plan passes --ns 64,128, then 256,512,
# then 1024,2048. Per N (the --widths call's measured costs, fp32 evaluation): unet-64 35 s training at 2,823
# images/s + 18 s evaluation (12 + 6.5); unet-128 66 s at 1,490 images/s + 59 s evaluation (41 + 18); warm-ups,
# captures and references ~14 s: ~192 s, so two N ~385 s and a call ~420 s. Use SECONDS = 540: the stage's limit is
# then ~442 s, and a stage ends 45 s (not 25 s) after it, as a unet-128 first point costs 41 s. A short call loses
# the largest N's unet-128 cell first, then its unet-64 cell.
#
# --widths runs the second width: unet-64 AND unet-128 in one process per N, into one folder, so that the merge
# computes RP between widths from their per-sample files: N = 16 to 110k images (points 40k, 70k, 110k; unet-64
# copies 94% there), then N = 4096 to 98,304 (points 49,152 and 98,304: the --grid cell, for a cross-call check of
# unet-64). bf16 with the CUDA-graph step, no compile. Expected: N = 16 ~215 s (unet-64 39 s training + 24 s
# evaluation; unet-128 74 s at ~1,495 images/s + ~54 s evaluation, assumed 2.5x unet-64's), N = 4096 ~175 s (35 + 20;
# 66 + 38), with data and merge ~420 s. Use SECONDS = 520 (N = 16 has a limit of 250 s; N = 4096 gets the rest).
#
# DATA: CIFAR-10's train split as an EDM-style zip folder, prepared here by
#   mkdir -p .gpu-data/cifar10-train && cp ../shared/data/cifar10-jpeg/train.zip .gpu-data/cifar10-train/
# (50 MiB; test.zip is left out to stay under the 64 MiB carry limit, so the held-out images of the per-sigma
# distances are the last 1,000 training images of the seeded class-balanced order, outside every subset).
# RESULTS: an empty folder (on the device machine: $OUT); at most 4 files come back: results.tar.gz (the combined
# summary.json, CSVs, figures, sample grids and every cell's config/log/metrics plus per_seed.npz, the per-seed
# arrays of each evaluation point without the samples; never checkpoints), run.log, stages.json (the commands and
# how long each took) and, with --exponent, bench_cifar_eval.json. SECONDS (default 380, for a call of 420 s): the
# wall-clock budget; every stage trains with --time-limit and is interrupted (SIGINT) 25 s after it, so that the
# merge still has 40 s at the end (a stopped cell keeps its evaluated points), and
# as shard 0/1 (train and evaluate, no combining: one merge at the end combines every cell of the folder).
#
# Without a mode, the stages, in priority order (the task's): A unet-64 at N = 64 trained longest, evaluated along
# training (the memorization-time curve); B unet-64 at N = 128 .. 4096 on a short budget; C the second width
# (unet-128) at N = 64 and 1024; D unet-64 at N = 16 and 32 (for the fit of the memorization time against N).
# Precision: float32 with TF32 products, no compile (bf16 + compile costs ~90 s of warm-up per shape, too much for a
# 7-minute call). Every mode: EDM preconditioning and no learning-rate warm-up (memorized ~4.5x sooner than VP in our
# CPU runs); 256 sampler seeds. Every deviation from the paper is stored in summary.json. --quick runs the same
# stages on the CPU with a tiny UNet (two widths, 16 and 32, where the GPU run has unet-64 and unet-128) on 8x8
# images and tiny budgets (a smoke test of this script, not a result).
set -uo pipefail
die() { echo "run_cifar_gap_gpu.sh: error: $*" >&2; exit 2; }
QUICK=0; MODE=default; MEM_N=64; N_GIVEN=0; GRID_NS=
while [[ "${1:-}" == --* ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --memorize|--exponent|--grid|--grid-wide|--widths)
      [[ $MODE == default ]] || die "--$MODE and $1 exclude each other (one mode per call)"
      MODE=${1#--} ;;
    --n) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "--n takes a positive whole number of training images, e.g. --n 128"
      MEM_N=$2; N_GIVEN=1; shift ;;
    --ns) [[ "${2:-}" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
        die "--ns takes ascending positive whole numbers of training images, comma-separated, e.g. --ns 64,128"
      prev=0
      for n in ${2//,/ }; do
        (( n > prev )) || die "--ns takes ascending positive whole numbers of training images, e.g. --ns 64,128 (got $2)"
        prev=$n
      done
      GRID_NS=$2; shift ;;
    *) die "unknown flag $1 (--quick, --memorize, --n N, --exponent, --grid, --grid-wide, --ns LIST, --widths)" ;;
  esac
  shift
done
(( N_GIVEN )) && [[ $MODE != memorize ]] && die "--n sets the N of --memorize; add --memorize or leave --n out"
[[ -n $GRID_NS && ! $MODE =~ ^grid ]] && die "--ns sets the N of --grid or --grid-wide; add one of them or leave --ns out"
DATA=${1:?DATA folder}; RESULTS=${2:?RESULTS folder}; BUDGET=${3:-380}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d /tmp/cifar-gap.XXXXXX)}
EXP=$WORK/exp
mkdir -p "$RESULTS" "$EXP"
RESULTS=$(cd "$RESULTS" && pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
LOG=$RESULTS/run.log
START=$SECONDS
MERGE_RESERVE=40
OVERHEAD=25  # start-up, data and references of a stage, and an evaluation begun before its limit

if (( QUICK )); then
  COMMON=(--device cpu --profile cpu-small --resolution 8 --batch 32 --sample-seeds 100000-100015
          --distance-queries 8 --loss-batch 64 --held-out 64 --checkpoint-every 0)
  NET=(--archs unet-tiny --widths 16); WIDE=(--archs unet-tiny --widths 32); BOTH=(--archs unet-tiny --widths 16,32)
  A=(--ns 64 --images 1024 --eval-at 256,512,1024)
  B=(--ns 128,256 --images 256 --eval-at 128,256)
  C=(--ns 64,256 --images 256 --eval-at 128,256)
  D=(--ns 16,32 --images 512 --eval-at 128,256,512)
  MERGE=(--ns 64,128,256 --images 256 --eval-at 128,256)
  CAPS=(150 100 100 100)
else
  ARITH=(--precision tf32 --no-compile)
  [[ $MODE == memorize ]] && ARITH=(--precision bf16 --compile)
  [[ $MODE =~ ^(exponent|grid|grid-wide|widths)$ ]] && ARITH=(--precision bf16 --no-compile --cuda-graph)
  # --eval-precision fp32: the earlier runs' cells (N = 16, 32, 64) were evaluated with the net in float32, and the
  # memorization-time fits merge cells across calls, so these calls keep that arithmetic (and its time estimates)
  # rather than the command's CUDA default (bf16).
  COMMON=(--device cuda --profile paper --precond edm --batch 128 --lr 1e-3 --lr-warmup-images 0 "${ARITH[@]}"
          --eval-precision fp32 --sample-seeds 100000-100255 --distance-queries 128 --loss-batch 1024 --held-out 1000
          --checkpoint-every 0)
  NET=(--archs unet-64); WIDE=(--archs unet-128); BOTH=(--archs unet-64,unet-128)
  A=(--ns 64 --images 196608 --eval-at 8192,16384,32768,65536,98304,131072,196608)
  B=(--ns 128,256,512,1024,2048,4096 --images 16384 --eval-at 8192,16384)
  C=(--ns 64,1024 --images 16384 --eval-at 8192,16384)
  D=(--ns 16,32 --images 32768 --eval-at 4096,8192,16384,32768)
  MERGE=(--ns 64,128,256,512,1024,2048,4096 --images 16384 --eval-at 8192,16384)
  CAPS=(130 70 45 40)
fi
MERGE_NET=("${NET[@]}")  # the networks the merge plans (it also finds every other cell of the folder)
if [[ $MODE == memorize ]]; then
  if (( QUICK )); then
    A=(--ns "$MEM_N" --images 2048 --eval-at 512,1024,1536,2048)
  else
    A=(--ns "$MEM_N" --images 1200000 --eval-at 150000,300000,450000,600000,800000,1000000,1200000)
  fi
  MERGE=("${A[@]}"); CAPS=(100000 0 0 0)
fi
if [[ $MODE == exponent ]]; then  # the cells of N = 16 and 32 (stage D's N), longer; one stage each (E16 the first)
  if (( QUICK )); then
    E16=(--ns 16 --images 8192 --eval-at 1024,2048,4096,8192)  # long enough that the tiny net copies
    E32=(--ns 32 --images 16384 --eval-at 2048,4096,8192,16384)
    BENCH=(--quick --data "$DATA" --cache-dir "$WORK/cache")
  else
    E16=(--ns 16 --images 160000 --eval-at 20000,40000,70000,110000,160000)
    E32=(--ns 32 --images 260000 --eval-at 40000,70000,110000,170000,260000)
    BENCH=(--data "$DATA" --cache-dir "$WORK/cache" --n 32768 --device cuda)
  fi
  MERGE=("${E32[@]}")  # plans the N = 32 cell; the merge finds the N = 16 cell in the folder
  E16_CAP=130  # expected ~100 s (56 s training, ~38 s for 5 evaluations); N = 32 may use all the rest
fi
if [[ $MODE =~ ^grid ]]; then  # N = 128 .. 4096 (--grid-wide: 64 .. 2048, both widths) at one budget, one process
  GRID_NET=("${NET[@]}"); DEFAULT_NS=128,256,512,1024,2048,4096
  if [[ $MODE == grid-wide ]]; then
    GRID_NET=("${BOTH[@]}"); MERGE_NET=("${BOTH[@]}"); DEFAULT_NS=64,128,256,512,1024,2048
    OVERHEAD=45  # a unet-128 first evaluation point costs 41 s; one begun just before the limit must finish
  fi
  if (( QUICK )); then
    G=(--ns "${GRID_NS:-$DEFAULT_NS}" --images 256 --eval-at 128,256)
  else
    G=(--ns "${GRID_NS:-$DEFAULT_NS}" --images 98304 --eval-at 49152,98304)
  fi
  MERGE=("${G[@]}")
fi
if [[ $MODE == widths ]]; then  # both widths in one process per N: a small N where both copy, then the grid's N = 4096
  if (( QUICK )); then
    W16=(--ns 16 --images 512 --eval-at 256,512)
    WBIG=(--ns 4096 --images 256 --eval-at 128,256)
  else
    W16=(--ns 16 --images 110000 --eval-at 40000,70000,110000)
    WBIG=(--ns 4096 --images 98304 --eval-at 49152,98304)
  fi
  MERGE=("${WBIG[@]}"); MERGE_NET=("${BOTH[@]}")  # the merge finds the N = 16 cells in the folder
  W16_CAP=250  # expected ~215 s; N = 4096 (expected ~175 s) may use all the rest
fi
BASE=(--data "$DATA" --out "$EXP" --cache-dir "$WORK/cache" --quiet "${COMMON[@]}")

echo "[" > "$WORK/stages.json"
if [[ $MODE == exponent ]]; then  # what a combined fit with the memorize run's N = 64 cell must state
  NOTE="training: ${ARITH[*]:-the CPU default} (the CUDA-graph step on CUDA, not compiled); the memorize run's N = 64 cell was trained in bf16 with the same graph step, compiled (--compile): the same arithmetic, only the compiled kernels' rounding differs"
  echo "note: $NOTE" | tee -a "$LOG"
  printf '{"stage": "note", "text": "%s"},\n' "$NOTE" >> "$WORK/stages.json"
fi
stage() {  # stage NAME CAP_SECONDS ARGS...: run one grid with the time left, record it
  local name=$1 cap=$2; shift 2
  local left=$(( BUDGET - (SECONDS - START) - MERGE_RESERVE - OVERHEAD ))
  (( left < cap )) && cap=$left
  if (( cap < 10 )); then
    echo "stage $name: skipped (${left} s left)" | tee -a "$LOG"
    printf '{"stage": "%s", "skipped": true, "seconds_left": %d},\n' "$name" "$left" >> "$WORK/stages.json"
    return
  fi
  local t0=$SECONDS
  echo "== stage $name (limit $cap s): $*" | tee -a "$LOG"
  timeout --signal=INT --kill-after=10 $(( cap + OVERHEAD )) \
    "$PY" -m mogsim.experiments.cifar_gap.command "${BASE[@]}" "$@" --shard 0/1 --time-limit "$(awk "BEGIN{print $cap/60}")" \
    >> "$LOG" 2>&1
  local rc=$?
  printf '{"stage": "%s", "args": "%s", "limit_s": %d, "seconds": %d, "exit_code": %d},\n' \
    "$name" "$*" "$cap" "$(( SECONDS - t0 ))" "$rc" >> "$WORK/stages.json"
  echo "   stage $name: exit $rc after $(( SECONDS - t0 )) s" | tee -a "$LOG"
}

"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" 2>&1 | tee -a "$LOG"
t0=$SECONDS  # decode the JPEGs once (the stages read the cached arrays)
"$PY" -c "from mogsim.experiments.cifar_gap.data import load_gap_data as f; f('$DATA', 1, cache_dir='$WORK/cache')" \
  >> "$LOG" 2>&1
echo "data decoded and cached in $(( SECONDS - t0 )) s" | tee -a "$LOG"
if [[ $MODE == exponent ]]; then
  stage E16 "$E16_CAP" "${NET[@]}" "${E16[@]}"
  stage E32 100000 "${NET[@]}" "${E32[@]}"
elif [[ $MODE =~ ^grid ]]; then
  stage G 100000 "${GRID_NET[@]}" "${G[@]}"
elif [[ $MODE == widths ]]; then
  stage W16 "$W16_CAP" "${BOTH[@]}" "${W16[@]}"
  stage W4096 100000 "${BOTH[@]}" "${WBIG[@]}"
else
  stage A "${CAPS[0]}" "${NET[@]}" "${A[@]}"
  stage B "${CAPS[1]}" "${NET[@]}" "${B[@]}"
  stage C "${CAPS[2]}" "${WIDE[@]}" "${C[@]}"
  stage D "${CAPS[3]}" "${NET[@]}" "${D[@]}"
fi
t0=$SECONDS
echo "== merge: every cell of $EXP" | tee -a "$LOG"
MERGE_LIMIT=$(( MERGE_RESERVE + BUDGET - (SECONDS - START) - 5 )); (( MERGE_LIMIT < 15 )) && MERGE_LIMIT=15
timeout --signal=INT --kill-after=5 $MERGE_LIMIT \
  "$PY" -m mogsim.experiments.cifar_gap.command "${BASE[@]}" "${MERGE_NET[@]}" "${MERGE[@]}" --merge >> "$LOG" 2>&1
printf '{"stage": "merge", "seconds": %d, "exit_code": %d, "total_seconds": %d}' "$(( SECONDS - t0 ))" "$?" \
  "$(( SECONDS - START ))" >> "$WORK/stages.json"
if [[ $MODE == exponent ]]; then  # the evaluation benchmark, only with 60 s or more left (the tar needs ~5 s after it)
  left=$(( BUDGET - (SECONDS - START) - 10 ))
  if (( left >= 60 )); then
    t0=$SECONDS
    echo "== bench_cifar_eval (limit $left s): ${BENCH[*]}" | tee -a "$LOG"
    timeout --signal=INT --kill-after=5 "$left" \
      "$PY" "$REPO/benchmarks/bench_cifar_eval.py" "${BENCH[@]}" --out "$RESULTS/bench_cifar_eval.json" >> "$LOG" 2>&1
    rc=$?
    printf ',\n{"stage": "bench_cifar_eval", "limit_s": %d, "seconds": %d, "exit_code": %d}' "$left" \
      "$(( SECONDS - t0 ))" "$rc" >> "$WORK/stages.json"
    echo "   bench_cifar_eval: exit $rc after $(( SECONDS - t0 )) s" | tee -a "$LOG"
  else
    echo "bench_cifar_eval: skipped (${left} s left)" | tee -a "$LOG"
    printf ',\n{"stage": "bench_cifar_eval", "skipped": true, "seconds_left": %d}' "$left" >> "$WORK/stages.json"
  fi
fi
printf '\n]\n' >> "$WORK/stages.json"
cp "$WORK/stages.json" "$RESULTS/stages.json"
# Small files only: the combined results and each cell's records (no checkpoints, no samples; per_seed.npz holds
# each point's per-seed arrays, a few KiB, so that a later --merge can combine these cells with others).
(cd "$EXP" && find . -maxdepth 1 -type f ! -name '*.lock' -print0 > "$WORK/files" &&
 find cells -path '*/checkpoints' -prune -o -type f \( -name config.json -o -name log.csv -o -name summary.json \
   -o -name metrics.json -o -name per_sigma.csv -o -name subset.json -o -name per_seed.npz \) -print0 >> "$WORK/files" &&
 tar czf "$RESULTS/results.tar.gz" --null -T "$WORK/files")
echo "done in $(( SECONDS - START )) s; results: $(du -h "$RESULTS/results.tar.gz" | cut -f1)" | tee -a "$LOG"
