#!/bin/bash
# Turn what gpu_call.sh brought back into this report folder, on a CPU with mogsim installed:
#   reports/unet-molrg-grid/unpack.sh FILES_AT [PYTHON]
# FILES_AT holds unet-molrg-grid.tar.gz and run.log. Copies the sweep's combined files here (sweep_table.csv,
# sweep_time.csv, sweep_metrics.json, sweep_collapse.json/.csv, ...), keeps the raw group and cell records as
# raw.tar.gz, redraws every figure (sweep_collapse.png/.pdf: paper 2's Fig. 5a) and writes sweep_report.pdf.
set -eu
FILES_AT=${1:?usage: unpack.sh FILES_AT [PYTHON]}
PY=${2:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
tar -xzf "$FILES_AT/unet-molrg-grid.tar.gz" -C "$TMP"
cp "$TMP"/export/* "$HERE"/
cp "$FILES_AT/unet-molrg-grid.tar.gz" "$HERE/raw.tar.gz"
cp "$FILES_AT/run.log" "$HERE/gpu_call.log"
"$PY" "$HERE/../../scripts/score_match_sweep.py" --redraw "$HERE"
"$PY" -m mogsim.cli.app report "$HERE" --out "$HERE/sweep_report.pdf"
"$PY" - "$HERE/sweep_collapse.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))["final"]
for d, v in {**c["per_d"], "pooled": c["pooled"] or {}}.items():
    print(f"d = {d}: GL reaches {c['level']} at N_k/d = {v.get('crossing')} ({v.get('status')})")
EOF
