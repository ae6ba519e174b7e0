"""Issue 15 on CPUs: a run resumes across a change in the number of processes (2 -> 1 and 1 -> 2, DDP over gloo)
and continues the loss curve of an uninterrupted single-process run, to float rounding.

Noise and data order are functions of (seed, step) and the global batch is split evenly over the ranks, so the
number of processes changes only how the batch mean and the gradient average are rounded. The networks are float64
here, so what remains is the float32 rounding of the per-sample loss.
"""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import torch
from gloo_workers import run_ranks

from mogsim.runs import RunFolder, load_checkpoint

SETUP = """
import torch
from mogsim.nets import network_config
from mogsim.training import Budget, RuntimeOptions, TrainConfig
torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
CFG = TrainConfig(net=network_config("unet-tiny", (3, 8, 8), model_channels=8, channel_mult=(1, 2),
                                     attn_resolutions=(4,)), precond="vp", batch=8, lr=2e-3, lr_warmup_images=16,
                  xflip=True)
DATA = torch.randint(0, 256, (10, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
RUNTIME = RuntimeOptions(progress="none", log_every=1, checkpoint_every=2, keep_checkpoints=0)
"""

# Both launches of the 2-process side in one job: a fresh run to step 2 ("two_one") and the continuation of a
# 1-process run from step 2 to step 4 ("one_two").
WORKER = SETUP + """
import sys
from pathlib import Path
from mogsim.training import cleanup_distributed, setup_distributed, train_run

root = Path(sys.argv[1])
ctx = setup_distributed("cpu")
train_run(CFG, DATA, Budget("steps", 2), root / "two_one", runtime=RUNTIME, ctx=ctx)
summary = train_run(CFG, DATA, Budget("steps", 4), root / "one_two", runtime=RUNTIME, ctx=ctx)
assert summary["resumed_at_step"] == 2, summary
cleanup_distributed(ctx)
"""


def _final(run: Path) -> dict:
    return load_checkpoint(RunFolder(run).latest_checkpoint())


def _logged_steps(run: Path) -> list[str]:
    with open(run / "log.csv", newline="") as fh:
        return [r["step"] for r in csv.DictReader(fh)]


def test_a_run_changes_its_number_of_processes_and_keeps_its_loss_curve(tmp_path):
    ns: dict = {}
    default_dtype = torch.get_default_dtype()
    try:
        exec(textwrap.dedent(SETUP), ns)
        from mogsim.training import train_run

        budget = ns["Budget"]
        cfg, data, runtime = ns["CFG"], ns["DATA"], ns["RUNTIME"]
        train_run(cfg, data, budget("steps", 4), tmp_path / "full", runtime=runtime)
        train_run(cfg, data, budget("steps", 2), tmp_path / "one_two", runtime=runtime)

        script = tmp_path / "worker.py"
        script.write_text(textwrap.dedent(WORKER))
        run_ranks(script, str(tmp_path))

        resumed = train_run(cfg, data, budget("steps", 4), tmp_path / "two_one", runtime=runtime)
        assert resumed["resumed_at_step"] == 2
    finally:
        torch.set_default_dtype(default_dtype)
    full = _final(tmp_path / "full")
    for name in ("two_one", "one_two"):
        got = _final(tmp_path / name)
        assert got["step"] == 4 and _logged_steps(tmp_path / name) == ["1", "2", "3", "4"]
        # the loss history (unrounded), then every weight and EMA weight. The per-sample loss is computed in
        # float32 (per_sample_loss), so a batch summed in two halves differs from one sum by float32 rounding
        # (measured: 7e-8 relative); a real change of trajectory (another batch, noise draw or step) moves the
        # losses by percents.
        torch.testing.assert_close(torch.tensor(got["loss"]["history"]), torch.tensor(full["loss"]["history"]),
                                   rtol=1e-6, atol=0, msg=name)
        for key in ("net", "ema"):
            for k, w in full[key].items():
                torch.testing.assert_close(got[key][k], w, rtol=1e-5, atol=1e-8, msg=f"{name} {key}.{k}")
    launches = json.loads((tmp_path / "one_two" / "config.json").read_text())["launches"]
    assert [x["world_size"] for x in launches] == [1, 2]
