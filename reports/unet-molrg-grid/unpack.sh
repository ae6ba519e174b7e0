#!/bin/bash
# Turn what gpu_call.sh brought back into this report folder, on a CPU with mogsim installed:
#   reports/unet-molrg-grid/unpack.sh FILES_AT [FILES_AT ...]          (PY=python by default)
# Each FILES_AT holds one call's unet-molrg-grid.tar.gz and run.log. One call: its combined files are copied here.
# Several calls (the shards of one sweep, e.g. --shard 0/2 and 1/2): their groups and cells are unpacked into one
# sweep folder and the device's sweep command is re-run here on the CPU, without --shard, to write the combined
# files over every cell (every cell is finished, so nothing trains). Then: the combined files here (sweep_table.csv,
# sweep_time.csv, sweep_metrics.json, sweep_collapse.json/.csv, ...), the raw archives as raw.tar.gz (raw-2.tar.gz,
# ...), the logs as gpu_call.log (gpu_call-2.log, ...), every figure redrawn (sweep_collapse.png/.pdf: paper 2's
# Fig. 5a) and sweep_report.pdf.
set -eu
[ $# -ge 1 ] || { echo "usage: unpack.sh FILES_AT [FILES_AT ...]" >&2; exit 2; }
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
i=1
for FILES_AT in "$@"; do
  suffix=$([ $i -eq 1 ] && echo "" || echo "-$i")
  tar -xzf "$FILES_AT/unet-molrg-grid.tar.gz" -C "$TMP"
  cp "$FILES_AT/unet-molrg-grid.tar.gz" "$HERE/raw$suffix.tar.gz"
  cp "$FILES_AT/run.log" "$HERE/gpu_call$suffix.log"
  i=$((i + 1))
done
if [ $# -gt 1 ]; then
  # the device's command (sweep_metrics.json: provenance.command), with this folder and the CPU instead
  "$PY" - "$TMP" <<'EOF' > "$TMP/command"
import json, shlex, sys
tmp = sys.argv[1]
args = shlex.split(json.load(open(tmp + "/export/sweep_metrics.json"))["provenance"]["command"])[1:]
drop = {"--shard": 1, "--time-limit": 1, "--out": 1, "--export": 1, "--device": 1}
kept, skip = [], 0
for a in args:
    if skip:
        skip -= 1
    elif a in drop:
        skip = drop[a]
    else:
        kept.append(a)
print(shlex.join(kept + ["--device", "cpu", "--out", tmp, "--export", tmp + "/merged", "--quiet"]))
EOF
  eval "\"$PY\" \"$HERE/../../scripts/score_match_sweep.py\" $(cat "$TMP/command")"
  cp "$TMP"/merged/* "$HERE"/
else
  cp "$TMP"/export/* "$HERE"/
fi
"$PY" "$HERE/../../scripts/score_match_sweep.py" --redraw "$HERE"
"$PY" -m mogsim.cli.app report "$HERE" --out "$HERE/sweep_report.pdf" || echo "unpack.sh: no PDF report (reportlab?)" >&2
"$PY" - "$HERE/sweep_collapse.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))["final"]
for d, v in {**c["per_d"], "pooled": c["pooled"] or {}}.items():
    print(f"d = {d}: GL reaches {c['level']} at N_k/d = {v.get('crossing')} ({v.get('status')})")
EOF
