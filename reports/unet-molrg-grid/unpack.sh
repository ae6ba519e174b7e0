#!/bin/bash
# Turn what gpu_call.sh brought back into a report folder, on a CPU with mogsim installed:
#   reports/unet-molrg-grid/unpack.sh FILES_AT [FILES_AT ...]    (PY=python, DEST=this folder by default)
# Each FILES_AT holds one call's unet-molrg-grid.tar.gz and run.log. Written into DEST: the combined files
# (sweep_table.csv, sweep_time.csv, sweep_metrics.json, sweep_collapse.json/.csv, ...), the raw archives as
# raw.tar.gz (raw-2.tar.gz, ...), the logs as gpu_call.log (gpu_call-2.log, ...), every figure redrawn
# (sweep_collapse.png/.pdf: paper 2's Fig. 5a) and sweep_report.pdf.
# Several calls (the shards of one sweep, --shard 0/2 and 1/2): when one call's combined files already cover every
# cell (its sweep found the other shards' finished cells, e.g. on a machine kept warm between the calls), those are
# taken. Otherwise the cells of all calls are unpacked into one sweep folder and the device's sweep command is re-run
# there without --shard, which trains nothing and writes the combined files over every cell. The sweep's cache keys
# hold the device type, so that re-run needs the shards' device type: on a CPU it merges CPU shards (gpu_call.sh
# --quick); CUDA shards need a GPU, and without one it stops with one line (exit 2) and writes nothing.
set -eu
[ $# -ge 1 ] || { echo "usage: unpack.sh FILES_AT [FILES_AT ...]" >&2; exit 2; }
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=${DEST:-$HERE}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for FILES_AT in "$@"; do
  [ -f "$FILES_AT/unet-molrg-grid.tar.gz" ] && [ -f "$FILES_AT/run.log" ] || {
    echo "unpack.sh: error: $FILES_AT lacks unet-molrg-grid.tar.gz or run.log; pass the folders a call brought back" >&2
    exit 2; }
done
i=1
for FILES_AT in "$@"; do
  mkdir -p "$TMP/call$i" && tar -xzf "$FILES_AT/unet-molrg-grid.tar.gz" -C "$TMP/call$i"
  i=$((i + 1))
done
# the first call whose combined files cover every cell, or the merge command for the sweep folder of all calls
"$PY" - "$TMP" $# <<'EOF_PY' > "$TMP/plan"
import json, shlex, shutil, sys
from pathlib import Path
tmp, calls = Path(sys.argv[1]), int(sys.argv[2])
metrics = [json.loads((tmp / f"call{i}/export/sweep_metrics.json").read_text()) for i in range(1, calls + 1)]
for i, m in enumerate(metrics, 1):
    if m.get("cells_done") == m.get("cells_total"):
        print(f"take {tmp}/call{i}/export")
        sys.exit()
device = metrics[0]["config"].get("device_type", "cpu")
merged = tmp / "merged"
for i in range(1, calls + 1):  # every call's sweep folders, cells and groups into one (the same cells are identical)
    shutil.copytree(tmp / f"call{i}", merged, dirs_exist_ok=True, ignore=shutil.ignore_patterns("export"))
args = shlex.split(metrics[0]["provenance"]["command"])[1:]
drop = {"--shard": 1, "--time-limit": 1, "--out": 1, "--export": 1, "--device": 1}
kept, skip = [], 0
for a in args:
    if skip:
        skip -= 1
    elif a in drop:
        skip = drop[a]
    else:
        kept.append(a)
print("merge " + shlex.join(kept + ["--device", device, "--out", str(merged), "--export", str(tmp / "export"),
                                    "--quiet"]))
EOF_PY
read -r how what < "$TMP/plan"
if [ "$how" = take ]; then
  SOURCE=$what
else
  eval "\"$PY\" \"$HERE/../../scripts/score_match_sweep.py\" $what" || {
    echo "unpack.sh: error: the merging sweep failed (above); CUDA shards merge only where a GPU is visible" >&2
    exit 2; }
  SOURCE=$TMP/export
fi
mkdir -p "$DEST"
i=1
for FILES_AT in "$@"; do
  suffix=$([ $i -eq 1 ] && echo "" || echo "-$i")
  cp "$FILES_AT/unet-molrg-grid.tar.gz" "$DEST/raw$suffix.tar.gz"
  cp "$FILES_AT/run.log" "$DEST/gpu_call$suffix.log"
  i=$((i + 1))
done
cp "$SOURCE"/* "$DEST"/
"$PY" "$HERE/../../scripts/score_match_sweep.py" --redraw "$DEST"
"$PY" -m mogsim.cli.app report "$DEST" --out "$DEST/sweep_report.pdf" || echo "unpack.sh: no PDF report (reportlab?)" >&2
"$PY" - "$DEST/sweep_collapse.json" <<'EOF_PY'
import json, sys
c = json.load(open(sys.argv[1]))["final"]
for d, v in {**c["per_d"], "pooled": c["pooled"] or {}}.items():
    print(f"d = {d}: GL reaches {c['level']} at N_k/d = {v.get('crossing')} ({v.get('status')})")
EOF_PY
