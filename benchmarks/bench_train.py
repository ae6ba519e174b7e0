"""Training speed of mogsim's Trainer (issue 11), side by side in one run, and the checks that the fast default
trains the same network as fp32.

Sections, in order (each skipped, and marked so, when it would overrun ``--budget-seconds``; each failure is
recorded and the run goes on; the JSON is rewritten after every section):

1. ``throughput``: the real training step (:meth:`mogsim.training.Trainer.run_step`) of unet-64 at batch 128 in
   fp32, tf32 and bf16 captured in one CUDA graph, and bf16 eager (the previous step's structure, uncompiled);
   unet-64 at batch 512 and unet-128 at batch 128 in bf16 captured. Median of ``--repeats`` timings of n steps
   between CUDA events on real CIFAR-10 images; peak memory; warm-up and capture seconds.
2. ``end_to_end`` and ``gpu_tests``, started in the background after section 1 and collected at the end:
   ``mogsim train`` on a real N = 64 CIFAR-10 subset, unet-64, its CUDA defaults (bf16, CUDA graph) with
   ``--compile`` (what the rule picks for a long run; while it compiles on the CPUs, the next sections use the
   GPU): its compile warm-up and the images/s of its log rows (data, logging and the final checkpoint included);
   rows that overlapped other sections on the GPU are reported apart. The GPU tests of ``tests/test_fast_step.py``
   (replay = eager step, capture fallback, GPU resume).
3. ``resume``: ``mogsim train`` (unet-tiny, defaults) interrupted with SIGINT at a step, resumed by the same
   command, against an uninterrupted run started beside it: the loss rows after the resume step, the final weights.
4. ``equivalence``: the fast default against fp32 over ``--equivalence-steps`` (20,000) steps: unet-tiny (one
   level, :data:`EQUIVALENCE_NET`) at batch 32 on 2,048 real CIFAR-10 images, ``--members`` seeds trained at
   once as the members of one Trainer per precision, both Trainers replayed side by side on two CUDA streams; the
   training loss of the last 10% of steps and the EMA nets' loss on a fixed evaluation set, per member (members =
   seeds: their spread is the seed-to-seed spread; member m of both precisions sees the same initial weights,
   batches and noise). It stops early, and records so, when fewer than ``--equivalence-reserve`` seconds are left.
5. ``profile``: ``torch.profiler`` breakdown of the bf16 captured unet-64 step (``step_profile.py``), if time is left.
6. ``members``: several small models at once, the Trainer's member axis (a :class:`~mogsim.nets.MemberList` of M
   UNets, each member's forward and backward on its own CUDA stream inside one captured graph) against one model at
   a time (the M = 1 row's images/s: the same models trained one after the other), :data:`MEMBERS_PLAN`: the
   score-match UNet of paper 2's Fig. 5a (unet-vector, n = 48 as 3x4x4, width 64, EDM preconditioning, fp32 without
   TF32 as ``mogsim score-match --arch unet`` trains it) on MoLRG samples, unet-tiny and unet-64 in bf16 on the
   CIFAR-10 subset. Aggregate images/s = M x batch / step time. Not compiled (one compilation per configuration
   would not fit the budget). Configurations run smallest first; one whose predicted time
   (:func:`predicted_seconds`) exceeds what is left is skipped and recorded so.

The previous default (bf16 + compile, eager step; 1,514 images/s on an H200, issue 11) is not re-measured: its
compile would cost a second warm-up of ~90 s this budget does not have; the table quotes it and says so.

GPU (one call; ``cifar2048.zip`` made by ``--make-subset``)::

    python benchmarks/bench_train.py --out $OUT --cifar .bench-data/cifar2048.zip --work /tmp/bench --budget-seconds 180
    python benchmarks/bench_train.py --out $OUT --cifar .bench-data/cifar2048.zip --work /tmp/bench --budget-seconds 85 \
        --only equivalence --equivalence-reserve 10      # a second call, if the first ran out of time

Several small models at once alone (first part of a shared call; about 100 s)::

    python benchmarks/bench_train.py --only members --out $OUT/members --cifar .bench-data/cifar2048.zip \
        --work /tmp/bench --budget-seconds 90

CPU smoke check (tiny networks, every section, a few steps; checks the script, measures nothing useful)::

    python benchmarks/bench_train.py --cpu-smoke --out /tmp/bench_train --cifar cifar2048.zip

Make the data file (on a machine with the full CIFAR-10 zip)::

    python benchmarks/bench_train.py --make-subset ../shared/data/cifar10-jpeg/train.zip .bench-data/cifar2048.zip
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:  # runnable from a checkout without installing
        sys.path.insert(0, path)

from mogsim.closed_forms import MoLRG  # noqa: E402
from mogsim.data import load_training_set  # noqa: E402
from mogsim.io import write_json  # noqa: E402
from mogsim.nets import network_config  # noqa: E402
from mogsim.provenance import provenance  # noqa: E402
from mogsim.training import DistContext, RuntimeOptions, TrainConfig, Trainer, per_sample_loss  # noqa: E402
from mogsim.training.loop import float32_mode  # noqa: E402

#: EDM's own training loop, DDPM++ width 64, batch 128, on an H200 (issue 11; not measured here).
EDM_IMAGES_PER_S = {"fp32": 833.0, "fp16": 870.0}
#: The previous CUDA default of ``mogsim train`` (bf16 + compile, eager step), H200, from the issue.
PREVIOUS_DEFAULT_IMAGES_PER_S = 1514.0
FLOP_PER_IMAGE = {"unet-64": 32.05e9, "unet-128": 127.13e9}
#: The equivalence run's network: unet-tiny (width 32) with one resolution level, attention at 32x32. It has every
#: kind of operation of unet-64 (3x3 and 1x1 convolutions, group norm + SiLU in bf16, attention, the noise
#: embedding, skip concatenation), so each operation rounds as it does there, with a tenth of the kernels per step,
#: which is what makes 20,000 steps of two precisions x three seeds affordable. It is shallower than unet-64, so
#: rounding errors accumulate over fewer layers: a fair test of the arithmetic, not of depth.
EQUIVALENCE_NET = {"channel_mult": (1,), "attn_resolutions": (32,)}
#: The ``members`` section: (network, batch, precision, member counts M), run in this order (smallest first, so that
#: a short budget drops the largest). unet-vector is paper 2's Fig. 5a network as ``mogsim score-match --arch unet``
#: builds it (3x4x4 images of n = 48, width 64), trained in fp32 without TF32 (that command's precision).
MEMBERS_PLAN = (("unet-vector", 512, "fp32", (1, 4, 8, 16)),
                ("unet-tiny", 128, "bf16", (1, 4, 8)),
                ("unet-64", 128, "bf16", (1, 2)))
#: Seconds the first (M = 1) configuration of each network is expected to take on an H200: building the Trainer,
#: warm-up with cuDNN autotuning, capture and the timings (unet-64 bf16: 8.7 s warm-up in the throughput section).
FIRST_ESTIMATE_S = {"unet-vector": 10.0, "unet-tiny": 10.0, "unet-64": 20.0}
#: A configuration starts only when this many times its predicted seconds are left (predictions from a smaller M
#: miss cuDNN's autotuning of new shapes and the GPU's clock changes).
MEMBERS_MARGIN = 1.25


class Run:
    """The result record, the time budget and the output file."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args, self.device, self.started = args, device, time.perf_counter()
        self.out, self.work = Path(args.out), Path(args.work or args.out)
        for folder in (self.out, self.work):
            folder.mkdir(parents=True, exist_ok=True)
        self.result: dict[str, Any] = {
            "benchmark": "bench_train", "issue": 11, "command": " ".join(sys.argv),
            "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "cpu_smoke": bool(args.cpu_smoke), "provenance": provenance(device), "sections": {}, "results": [],
        }

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.args.budget_seconds - self.elapsed()

    def section(self, name: str, needs_seconds: float, fn: Callable[[], Any]) -> Any:
        """Run a section if ``--only`` selects it and ``needs_seconds`` are left; record its value or error."""
        only = [o.strip() for o in (self.args.only or "").split(",") if o.strip()]
        if only and name not in only:
            return None
        if self.left() < needs_seconds:
            self.result["sections"][name] = {"status": "skipped", "reason": f"{self.left():.0f} s left of the "
                                             f"budget, needs {needs_seconds:.0f} s"}
            print(f"[bench] {name}: skipped ({self.left():.0f} s left)", flush=True)
            self.save()
            return None
        print(f"[bench] {name} ... ({self.elapsed():.0f} s)", flush=True)
        t0 = time.perf_counter()
        try:
            value = fn()
            self.result["sections"][name] = {"status": "ok", "seconds": time.perf_counter() - t0, "value": value}
        except Exception as exc:  # noqa: BLE001 - record and go on
            value = None
            self.result["sections"][name] = {"status": "failed", "seconds": time.perf_counter() - t0,
                                             "error": f"{type(exc).__name__}: {exc}"[:800],
                                             "traceback": traceback.format_exc()[-3000:]}
            print(f"[bench] {name} FAILED: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
        self.save()
        return value

    def save(self) -> None:
        self.result["total_seconds"] = self.elapsed()
        write_json(self.out / "bench_train.json", self.result)


# --- helpers ------------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms_per_step(step_fn: Callable[[int], None], device: torch.device, first_step: int, repeats: int,
                target_s: float) -> dict[str, Any]:
    """Median ms per step over ``repeats`` timings of n steps (n sized from one step to about ``target_s``)."""
    sync(device)
    t0 = time.perf_counter()
    step_fn(first_step)
    sync(device)
    n = int(min(max(3, target_s / max(time.perf_counter() - t0, 1e-4)), 300))
    k, times = first_step + 1, []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        for _ in range(n):
            step_fn(k)
            k += 1
        if device.type == "cuda":
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / n)
        else:
            times.append(1000 * (time.perf_counter() - t0) / n)
    return {"ms_per_step": statistics.median(times), "ms_per_step_repeats": times, "steps_per_repeat": n}


def ratios(arch: str, batch: int, images_per_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if arch in FLOP_PER_IMAGE:
        out["tflop_per_s"] = FLOP_PER_IMAGE[arch] * images_per_s / 1e12
    if arch == "unet-64" and batch == 128:
        out.update(vs_edm_fp32=images_per_s / EDM_IMAGES_PER_S["fp32"],
                   vs_edm_fp16=images_per_s / EDM_IMAGES_PER_S["fp16"],
                   vs_previous_default=images_per_s / PREVIOUS_DEFAULT_IMAGES_PER_S)
    return out


def cli(*args: str) -> list[str]:
    """The ``mogsim`` command (run with a working directory outside the checkout, where ``mogsim.cli`` resolves)."""
    return [sys.executable, "-m", "mogsim.cli.app", *args]


def read_log(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]


def make_subset(source: Path, target: Path, n: int = 2048) -> None:
    """The benchmark's data: a class-balanced seeded subset of ``n`` CIFAR-10 training images (subset seed 0)."""
    from mogsim.data import load_cifar10, write_edm_zip

    loaded = load_training_set(source, n=n, subset_seed=0, balanced=True)
    _, labels = load_cifar10(source, split="train")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_edm_zip(target, loaded.data.numpy(), labels[loaded.indices])
    print(f"wrote {target}: {n} images, {target.stat().st_size / 2**20:.1f} MiB", flush=True)


# --- the sections -------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, run: Run) -> None:
        self.run, self.device, a = run, run.device, run.args
        self.smoke = a.cpu_smoke
        self.rows: list[dict[str, Any]] = run.result["results"]
        self.data = load_training_set(a.cifar).data  # uint8 (N, 3, 32, 32)
        self.repeats, self.target_s = (1, 0.0) if self.smoke else (a.repeats, a.target_seconds)

    def net(self, arch: str, **overrides: Any) -> dict[str, Any]:
        if self.smoke:
            arch, overrides = "unet-tiny", {"model_channels": 8, "channel_mult": (1, 2), **overrides}
        return network_config(arch, (3, 32, 32), **overrides)

    def trainer(self, cfg: TrainConfig, data: Any, runtime: RuntimeOptions) -> Trainer:
        return Trainer(cfg, data, runtime=runtime, ctx=DistContext(device=self.device))

    # 1 ---------------------------------------------------------------------------------------------------------
    def throughput(self) -> list[dict[str, Any]]:
        cuda = self.device.type == "cuda"
        plan = [("unet-64", 128, "fp32", True), ("unet-64", 128, "tf32", True), ("unet-64", 128, "bf16", True),
                ("unet-64", 128, "bf16", False), ("unet-64", 512, "bf16", True), ("unet-128", 128, "bf16", True)]
        if self.smoke:
            plan = [("unet-64", 4, "fp32", False), ("unet-64", 4, "bf16", False)]
        rows = []
        for arch, batch, precision, graph in plan:
            mode = precision + ("+graph" if graph else ", eager")
            row: dict[str, Any] = {"arch": arch, "batch": batch, "mode": mode, "precision": precision,
                                   "compile": False, "cuda_graph": graph, "default": False, "source": "measured"}
            if self.run.left() < 25:
                row.update(status="skipped", reason="time budget")
                rows.append(row)
                continue
            trainer = None
            try:
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(self.device)
                cfg = TrainConfig(net=self.net(arch), precond="vp", batch=batch, precision=precision)
                trainer = self.trainer(cfg, self.data, RuntimeOptions(compile=False, cuda_graph=graph,
                                                                      progress="none"))
                ex = trainer.prepare_execution(10**6)
                with float32_mode(self.device, precision == "tf32"):
                    timing = ms_per_step(trainer.run_step, self.device, 0, self.repeats, self.target_s)
                ips = 1000 * batch / timing["ms_per_step"]
                row.update(status="ok", images_per_s=ips, **timing, parameters=trainer.num_parameters,
                           warmup_s=ex.warmup_s, capture_s=ex.capture_s, graph_fallback=ex.graph_fallback,
                           peak_memory_gib=torch.cuda.max_memory_allocated(self.device) / 2**30 if cuda else None,
                           **ratios(arch, batch, ips))
            except Exception as exc:  # noqa: BLE001
                row.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
            finally:
                del trainer
            print(f"[bench]   {arch} b{batch} {mode}: "
                  f"{row.get('images_per_s', float('nan')):,.0f} img/s {row.get('error', '')}", flush=True)
            rows.append(row)
            self.rows.append(row)
        self.rows.append({"arch": "unet-64", "batch": 128, "mode": "bf16+compile, eager (previous default)",
                          "precision": "bf16", "compile": True, "cuda_graph": False, "default": False,
                          "status": "quoted", "source": "issue 11 (H200), not re-measured",
                          "images_per_s": PREVIOUS_DEFAULT_IMAGES_PER_S,
                          **ratios("unet-64", 128, PREVIOUS_DEFAULT_IMAGES_PER_S)})
        return rows

    # 2 ---------------------------------------------------------------------------------------------------------
    def start_end_to_end(self) -> dict[str, Any]:
        """Start ``mogsim train`` (unet-64, N = 64, defaults + --compile) in the background."""
        out = self.run.work / "e2e"
        steps = 40 if self.smoke else self.run.args.e2e_steps
        args = ["train", "--data", str(Path(self.run.args.cifar).resolve()), "--n", "64", "--balanced",
                "--arch", "unet-tiny" if self.smoke else "unet-64", "--precond", "vp", "--steps", str(steps), "--log-every", "10" if self.smoke
                else "50", "--checkpoint-every", "0", "--out", str(out), "--device", self.device.type]
        if self.smoke:
            args += ["--width", "8", "--batch", "8"]
        else:
            args += ["--compile"]
        log = open(self.run.out / "e2e.log", "w")
        proc = subprocess.Popen(cli(*args), cwd=self.run.work, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return {"proc": proc, "log": log, "out": out, "command": "mogsim " + " ".join(args)}

    def start_gpu_tests(self) -> dict[str, Any]:
        """Start the GPU tests of the captured step (replay = eager step, capture fallback, GPU resume) in the
        background: they validate on the GPU what CI checks on the CPU with a stand-in graph."""
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_fast_step.py"),
               str(REPO / "tests" / "test_training.py"), "-k", "replayed or capture_failure or gpu_resume or cuda_bf16"]
        log = open(self.run.out / "gpu_tests.log", "w")
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
        return {"proc": proc, "log": log, "command": " ".join(cmd[1:])}

    def finish_gpu_tests(self, job: dict[str, Any]) -> dict[str, Any]:
        try:
            job["proc"].wait(timeout=max(self.run.left(), 5))
        except subprocess.TimeoutExpired:
            job["proc"].kill()
            job["proc"].wait()
        job["log"].close()
        text = (self.run.out / "gpu_tests.log").read_text()
        return {"command": job["command"], "returncode": job["proc"].returncode, "output_tail": text[-3000:]}

    def finish_end_to_end(self, job: dict[str, Any], rows_when_free: int) -> dict[str, Any]:
        proc = job["proc"]
        try:
            proc.wait(timeout=max(self.run.left(), 5))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # the run checkpoints and stops at the next step
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        job["log"].close()
        text = (self.run.out / "e2e.log").read_text()
        summary_path = job["out"] / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        rows = read_log(job["out"] / "log.csv")
        # rows written before the foreground sections ended, and the one then in progress, shared the GPU with
        # them; the first row also holds the first replays
        first_clean = max(1, rows_when_free + 1)
        clean = [r["images_per_s"] for r in rows[first_clean:]]
        busy = [r["images_per_s"] for r in rows[1:first_clean]]
        result = {"command": job["command"], "returncode": proc.returncode, "summary": summary,
                  "log_rows": len(rows), "rows": rows, "output_tail": text[-3000:],
                  "images_per_s_median_clean_rows": statistics.median(clean) if clean else None,
                  "clean_rows": len(clean), "images_per_s_median_overlapped_rows":
                  statistics.median(busy) if busy else None, "overlapped_rows": len(busy)}
        ips = result["images_per_s_median_clean_rows"] or result["images_per_s_median_overlapped_rows"]
        if ips:
            ex = (summary or {}).get("execution") or {}
            self.rows.append({"arch": "unet-64", "batch": 128, "mode": "bf16+compile+graph (mogsim train)",
                              "precision": "bf16", "compile": True, "cuda_graph": True, "default": True,
                              "status": "ok", "source": "mogsim train log rows (median)", "images_per_s": ips,
                              "warmup_s": ex.get("warmup_s"), "peak_memory_gib": (summary or {}).get(
                                  "peak_memory_gib"), **ratios("unet-64", 128, ips)})
        return result

    # 3 ---------------------------------------------------------------------------------------------------------
    def resume(self) -> dict[str, Any]:
        """``mogsim train`` killed with SIGINT at a step and resumed, against an uninterrupted run; a second
        uninterrupted run beside them measures how far two identical GPU runs drift apart anyway (cuDNN's
        autotuning and atomics)."""
        steps = 60 if self.smoke else self.run.args.resume_steps
        base = ["train", "--data", str(Path(self.run.args.cifar).resolve()), "--n", "64", "--balanced", "--arch",
                "unet-tiny", "--precond", "vp", "--steps", str(steps), "--log-every", "10", "--checkpoint-every",
                "0", "--no-progress", "--device", self.device.type]
        if self.smoke:
            base += ["--width", "8", "--batch", "8"]
        folders = {name: self.run.work / f"resume_{name}" for name in ("full", "again", "cut")}

        def start(name: str) -> subprocess.Popen:
            return subprocess.Popen(cli(*base, "--out", str(folders[name])), cwd=self.run.work,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        procs = {name: start(name) for name in folders}  # side by side
        cut = procs["cut"]
        while cut.poll() is None:  # interrupt once the run has logged a third of its steps
            rows = read_log(folders["cut"] / "log.csv")
            if rows and rows[-1]["step"] >= steps // 3:
                cut.send_signal(signal.SIGINT)
                break
            time.sleep(0.05)
        outputs = {name: proc.communicate(timeout=300)[0] for name, proc in procs.items()}
        returncodes = {name: proc.returncode for name, proc in procs.items()}
        resumed = subprocess.run(cli(*base, "--out", str(folders["cut"])), cwd=self.run.work, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=300)
        outputs["resumed"], returncodes["resumed"] = resumed.stdout, resumed.returncode
        summary = json.loads((folders["cut"] / "summary.json").read_text())
        resumed_at = summary.get("resumed_at_step")
        from mogsim.runs import RunFolder, load_checkpoint

        def against_full(name: str) -> dict[str, Any]:
            """Loss rows after the resume step and final weights of run ``name`` against the uninterrupted one."""
            reference = {r["step"]: r["loss"] for r in read_log(folders["full"] / "log.csv")}
            pairs = [(reference[r["step"]], r["loss"]) for r in read_log(folders[name] / "log.csv")
                     if resumed_at is not None and r["step"] > resumed_at and r["step"] in reference]
            rel = [abs(x - y) / abs(x) for x, y in pairs]
            wa = load_checkpoint(RunFolder(folders["full"]).latest_checkpoint())["net"]
            wb = load_checkpoint(RunFolder(folders[name]).latest_checkpoint())["net"]
            num = sum(float((wa[k].double() - wb[k].double()).norm() ** 2) for k in wa)
            den = sum(float(wa[k].double().norm() ** 2) for k in wa)
            return {"rows_compared": len(pairs), "loss_rel_diff_max": max(rel) if rel else None,
                    "loss_rel_diff_median": statistics.median(rel) if rel else None,
                    "weights_rel_diff": (num / den) ** 0.5}

        return {"steps": steps, "resumed_at_step": resumed_at, "resumed": against_full("cut"),
                "uninterrupted_again": against_full("again"), "execution": summary.get("execution"),
                "returncodes": returncodes, "tails": {k: v[-600:] for k, v in outputs.items()}}

    # 4 ---------------------------------------------------------------------------------------------------------
    def equivalence(self) -> dict[str, Any]:
        """bf16 (the fast default) against fp32 over many steps, several seeds as members, side by side."""
        a = self.run.args
        steps = 8 if self.smoke else a.equivalence_steps
        members = 2 if self.smoke else a.members
        log_every = max(1, steps // 40)
        net = network_config("unet-tiny", (3, 32, 32), members=members, **EQUIVALENCE_NET,
                             **({"model_channels": 8} if self.smoke else {}))
        trainers, streams = {}, {}
        for precision in ("fp32", "bf16"):
            cfg = TrainConfig(net=net, precond="vp", batch=8 if self.smoke else 32, precision=precision, seed=7)
            # not compiled: the rule would not compile a launch this short, and two compilations would not fit
            trainers[precision] = self.trainer(cfg, [self.data] * members,
                                               RuntimeOptions(progress="none", compile=False))
            trainers[precision].prepare_execution(steps)
            streams[precision] = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        history: dict[str, list[list[float]]] = {p: [] for p in trainers}
        t0 = time.perf_counter()
        deadline = t0 + max(self.run.left() - a.equivalence_reserve, 10)
        done = 0
        for k in range(steps):
            for precision, trainer in trainers.items():
                stream = streams[precision]
                with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                    trainer.run_step(k)
            done = k + 1
            if done % log_every == 0 or done == steps:
                for precision, trainer in trainers.items():
                    trainer._check_finite()
                    losses, _ = trainer._mean_since_last_row()
                    trainer._reset_sums()
                    history[precision].append([done, *losses])
                if time.perf_counter() > deadline:
                    break
        sync(self.device)
        seconds = time.perf_counter() - t0
        # the last 10% of the steps: mean training loss per member; the EMA nets on a fixed evaluation set
        tail = {p: np.array([row[1:] for row in h if row[0] > 0.9 * done]) for p, h in history.items()}
        train_tail = {p: t.mean(axis=0).tolist() for p, t in tail.items()}
        evaluation = {p: self._evaluate(tr) for p, tr in trainers.items()}
        result = {"steps_done": done, "steps_planned": steps, "members": members, "seconds": seconds,
                  "execution": {p: tr.execution.record() for p, tr in trainers.items()},
                  "train_loss_last_10pct": train_tail, "eval_loss": evaluation, "history": history}
        for name, values in (("train", train_tail), ("eval", evaluation)):
            fp32, bf16 = np.array(values["fp32"]), np.array(values["bf16"])
            result[f"{name}_paired_rel_diff"] = ((bf16 - fp32) / fp32).tolist()
            result[f"{name}_mean_rel_diff"] = float((bf16.mean() - fp32.mean()) / fp32.mean())
            result[f"{name}_seed_spread_rel"] = {p: float(np.std(np.array(v), ddof=1) / np.mean(v))
                                                 for p, v in values.items()} if members > 1 else None
        return result

    def _evaluate(self, trainer: Trainer, n: int = 1024) -> list[float]:
        """Each member's EMA net on one fixed set of (training image, sigma, noise) triples, in float32."""
        g = torch.Generator().manual_seed(123)
        n = min(n, 64) if self.smoke else n
        idx = torch.randint(0, self.data.shape[0], (n,), generator=g)
        y = (self.data[idx].float() / 127.5 - 1).to(self.device)
        sigma = trainer.loss.sample_sigma((n,), torch.Generator(device=self.device).manual_seed(5), self.device)
        noise = torch.randn(y.shape, generator=torch.Generator(device=self.device).manual_seed(6), device=self.device)
        ema = trainer.ema_denoiser()
        out = []
        with torch.no_grad(), float32_mode(self.device, False):
            for m in range(trainer.members):
                losses = per_sample_loss(ema.member(m).denoise, trainer.loss, y, sigma, noise)
                out.append(float(losses.mean()))
        return out

    # 5 ---------------------------------------------------------------------------------------------------------
    def profile(self) -> dict[str, Any]:
        from step_profile import category_table, profile_steps

        cfg = TrainConfig(net=self.net("unet-64"), precond="vp", batch=4 if self.smoke else 128, precision="bf16")
        trainer = self.trainer(cfg, self.data, RuntimeOptions(compile=False, progress="none"))
        trainer.prepare_execution(10**6)
        for k in range(3):
            trainer.run_step(k)
        result = profile_steps(trainer.run_step, 3, 3, self.device)
        result["table"] = category_table(result)
        return result

    # 6 ---------------------------------------------------------------------------------------------------------
    def members(self) -> dict[str, Any]:
        """M models at once as the members of one Trainer against one model at a time, per :data:`MEMBERS_PLAN`."""
        rows: list[dict[str, Any]] = []
        for arch, batch, precision, counts in MEMBERS_PLAN:
            if self.smoke:
                batch, counts = 8, (1, 2)
            data, data_name = ((self._molrg_vectors(), "MoLRG n=48 K=2 r=6") if arch == "unet-vector"
                               else (self.data, f"CIFAR-10 {self.data.shape[0]}"))
            previous: tuple[int, float, float] | None = None  # (M, seconds, timing seconds) of the last measured
            alone: float | None = None  # images/s of M = 1
            for members in counts:
                row = self._members_row(arch, batch, precision, members, data, data_name, previous)
                if row["status"] == "ok":
                    previous = (members, row["seconds"], row["timing_s"])
                    if members == 1:
                        alone = row["images_per_s"]
                    if alone is not None:
                        row.update(one_at_a_time_images_per_s=alone,
                                   speedup_vs_one_at_a_time=row["images_per_s"] / alone)
                print(f"[bench]   {arch} b{batch} {row['mode']} M={members}: {row['status']} "
                      f"{row.get('images_per_s', float('nan')):,.0f} img/s "
                      f"x{row.get('speedup_vs_one_at_a_time', float('nan')):.2f} "
                      f"{row.get('reason') or row.get('error', '')}", flush=True)
                rows.append(row)
                self.rows.append(row)
                self.run.save()
        table = members_table(rows)
        print(table, flush=True)
        return {"compile": "off: one compilation per configuration (~85 s for unet-64) would not fit the budget",
                "one_at_a_time": "the M = 1 row's images/s: the same models trained one after the other",
                "rows": len(rows), "skipped": sum(r["status"] == "skipped" for r in rows),
                "failed": sum(r["status"] == "failed" for r in rows), "table": table}

    def _members_row(self, arch: str, batch: int, precision: str, members: int, data: torch.Tensor, data_name: str,
                     previous: tuple[int, float, float] | None) -> dict[str, Any]:
        """One ``members`` configuration: a Trainer of ``members`` models on copies of ``data``, its step timed."""
        cuda = self.device.type == "cuda"
        row: dict[str, Any] = {"section": "members", "arch": arch, "data": data_name, "batch": batch,
                               "members": members, "mode": precision + ("+graph" if cuda else ", eager"),
                               "precision": precision, "compile": False, "cuda_graph": cuda, "default": False,
                               "source": "measured"}
        need = MEMBERS_MARGIN * predicted_seconds(arch, previous, members)
        if self.run.left() < need:
            row.update(status="skipped", reason=f"time budget: {self.run.left():.0f} s left, needs ~{need:.0f} s")
            return row
        trainer = None
        t0 = time.perf_counter()
        try:
            if cuda:
                gc.collect()  # the previous configuration's graph and memory pool go first
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(self.device)
            if arch == "unet-vector":  # as mogsim score-match --arch unet builds it
                net = network_config("unet-vector", (48,), image_shape=(3, 4, 4), members=members,
                                     model_channels=8 if self.smoke else 64)
                precond = "edm"
            else:
                net, precond = self.net(arch, members=members), "vp"
            cfg = TrainConfig(net=net, precond=precond, batch=batch, precision=precision)
            trainer = self.trainer(cfg, [data] * members if members > 1 else data,
                                   RuntimeOptions(compile=False, cuda_graph=cuda, progress="none"))
            ex = trainer.prepare_execution(10**6)
            t_timing = time.perf_counter()
            with float32_mode(self.device, precision == "tf32"):
                timing = ms_per_step(trainer.run_step, self.device, 0, self.repeats, self.target_s)
            ips = 1000 * members * batch / timing["ms_per_step"]
            row.update(status="ok", images_per_s=ips, images_per_s_per_model=ips / members, **timing,
                       timing_s=time.perf_counter() - t_timing, parameters=trainer.num_parameters,
                       streams=ex.streams, warmup_s=ex.warmup_s, capture_s=ex.capture_s,
                       graph_fallback=ex.graph_fallback,
                       peak_memory_gib=torch.cuda.max_memory_allocated(self.device) / 2**30 if cuda else None)
            if ex.graph_fallback:  # the trainer kept the eager step: say so where the numbers are read
                row["mode"] = f"{precision}, eager (capture failed)"
            if arch in FLOP_PER_IMAGE:
                row["tflop_per_s"] = FLOP_PER_IMAGE[arch] * ips / 1e12
        except Exception as exc:  # noqa: BLE001 - record and go on
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            del trainer
        row["seconds"] = time.perf_counter() - t0
        return row

    def _molrg_vectors(self, n: int = 2048) -> torch.Tensor:
        """Training vectors for the Fig. 5a network: n samples of a random MoLRG in R^48 (K = 2 subspaces of rank
        6; the step's speed does not depend on the values)."""
        return MoLRG.random(48, 2, 6, seed=0).sample(n, seed=1)[0].to(torch.float32)


def predicted_seconds(arch: str, previous: tuple[int, float, float] | None, members: int) -> float:
    """Expected seconds of the ``members`` configuration (``arch``, M = ``members``). ``previous`` = (M, total
    seconds, seconds of its timings) of the same network's last measured configuration: its timings take about the
    same time whatever M (``ms_per_step`` sizes them to ``--target-seconds``), the rest (building, warm-up, capture)
    grows with M. Without one, :data:`FIRST_ESTIMATE_S`."""
    if previous is None:
        return FIRST_ESTIMATE_S[arch]
    m0, total, timing = previous
    return timing + max(total - timing, 0.0) * members / m0


def members_table(rows: list[dict[str, Any]]) -> str:
    """The ``members`` section's summary: aggregate images/s of M models at once against one at a time."""
    lines = ["| network | data | batch | mode | M | images/s, all M | per model | one at a time | speed-up | ms/step | "
             "warm-up s | capture s | peak GiB |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ips = (cell(r, "images_per_s", ",.0f") if r.get("status") == "ok"
               else f"{r.get('status')}: {r.get('reason') or r.get('error', '')}"[:60])
        numbers = [cell(r, key, fmt) for key, fmt in (
            ("images_per_s_per_model", ",.0f"), ("one_at_a_time_images_per_s", ",.0f"),
            ("speedup_vs_one_at_a_time", ".2f"), ("ms_per_step", ".2f"), ("warmup_s", ".1f"), ("capture_s", ".1f"),
            ("peak_memory_gib", ".2f"))]
        lines.append(f"| {r['arch']} | {r['data']} | {r['batch']} | {r['mode']} | {r['members']} | {ips} | "
                     + " | ".join(numbers) + " |")
    return "\n".join(lines)


def cell(row: dict[str, Any], key: str, fmt: str) -> str:
    """A table cell: ``row[key]`` formatted, or "-" when it is missing."""
    value = row.get(key)
    return format(value, fmt) if isinstance(value, (int, float)) else "-"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| network | batch | mode | images/s | ms/step | vs EDM fp32 | vs previous default | warm-up s | "
             "peak GiB | source |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        ips = r.get("images_per_s")
        lines.append(f"| {r['arch']} | {r['batch']} | {r['mode']}{' **(default)**' if r.get('default') else ''} | "
                     f"{format(ips, ',.0f') if ips else r.get('status')} | {cell(r, 'ms_per_step', '.1f')} | "
                     f"{cell(r, 'vs_edm_fp32', '.2f')} | {cell(r, 'vs_previous_default', '.2f')} | "
                     f"{cell(r, 'warmup_s', '.1f')} | {cell(r, 'peak_memory_gib', '.2f')} | {r.get('source', '')} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="Folder for bench_train.json and the runs' folders and logs.")
    p.add_argument("--work", type=Path, help="Folder for the runs' folders (default: --out).")
    p.add_argument("--cifar", type=Path, help="The data: an EDM-style zip of real CIFAR-10 images (--make-subset).")
    p.add_argument("--make-subset", nargs=2, type=Path, metavar=("CIFAR10", "ZIP"),
                   help="Write the 2,048-image balanced subset (seed 0) of CIFAR10 to ZIP and exit.")
    p.add_argument("--budget-seconds", type=float, default=200.0)
    p.add_argument("--repeats", type=int, default=5, help="Timings per configuration (median reported).")
    p.add_argument("--target-seconds", type=float, default=0.4, help="Length of one timing.")
    p.add_argument("--e2e-steps", type=int, default=600)
    p.add_argument("--resume-steps", type=int, default=600)
    p.add_argument("--equivalence-steps", type=int, default=20000)
    p.add_argument("--equivalence-reserve", type=float, default=45.0,
                   help="Stop the equivalence run early when fewer seconds than this are left (recorded).")
    p.add_argument("--members", type=int, default=3, help="Seeds (members) per precision in the equivalence run.")
    p.add_argument("--only", default=None, help="Comma-separated section names.")
    p.add_argument("--device", default="auto")
    p.add_argument("--cpu-smoke", action="store_true")
    args = p.parse_args(argv)
    if args.make_subset is None and (args.out is None or args.cifar is None):
        p.error("--out and --cifar are needed (or --make-subset)")
    if args.cpu_smoke:
        args.budget_seconds = max(args.budget_seconds, 1800.0)  # a loaded 2-core machine is slow
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.make_subset is not None:
        make_subset(*args.make_subset)
        return {}
    from mogsim.devices import resolve_device

    device = torch.device("cpu") if args.cpu_smoke else resolve_device(args.device)
    run = Run(args, device)
    bench = Bench(run)
    only = [o.strip() for o in (args.only or "").split(",") if o.strip()]
    run.section("throughput", 30, bench.throughput)
    job = tests = None
    if not only or "end_to_end" in only:
        job = bench.start_end_to_end()
    if not only or "gpu_tests" in only:
        tests = bench.start_gpu_tests()
    run.section("resume", 30, bench.resume)
    run.section("equivalence", 40, bench.equivalence)
    if job is not None:
        rows_when_free = len(read_log(job["out"] / "log.csv"))
        run.section("end_to_end", 0, lambda: bench.finish_end_to_end(job, rows_when_free))
    if tests is not None:
        run.section("gpu_tests", 0, lambda: bench.finish_gpu_tests(tests))
    run.section("profile", 25, bench.profile)
    run.section("members", 30, bench.members)
    run.save()
    step_rows = [r for r in run.result["results"] if r.get("section") != "members"]
    if step_rows:
        print(markdown_table(step_rows))
    sections = run.result["sections"]
    if "equivalence" in sections:
        eq = sections["equivalence"].get("value") or {}
        for key in ("steps_done", "train_mean_rel_diff", "train_seed_spread_rel", "eval_mean_rel_diff",
                    "eval_seed_spread_rel", "eval_paired_rel_diff"):
            print(f"[bench] equivalence {key}: {eq.get(key)}")
    if "resume" in sections:
        rs = sections["resume"].get("value") or {}
        for key in ("resumed_at_step", "resumed", "uninterrupted_again"):
            print(f"[bench] resume {key}: {rs.get(key)}")
    print(f"[bench] wrote {run.out / 'bench_train.json'} ({run.elapsed():.0f} s)")
    return run.result


if __name__ == "__main__":
    main()
