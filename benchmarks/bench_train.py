"""Training throughput (images/s) of mogsim's trainer: float32 vs bf16 vs bf16 + channels_last vs + torch.compile.

Runs the real training step (:meth:`mogsim.training.Trainer.train_step`: data indexing, noise, EDM/VP loss,
backward, Adam, EMA) on random uint8 images, so no data set is needed. Per configuration: build, warm up (this
includes compilation, timed separately), then time ``--steps`` steps between CUDA synchronisations (capped at
``--max-seconds`` per configuration). A failure (e.g. compile) is recorded and the benchmark goes on. Uncompiled
configurations run first; configurations that would start after ``--budget-seconds`` (compiled ones: after
``--budget-seconds - --compile-reserve``) are skipped and marked so.

GPU (about 5 minutes on one H100, compile included)::

    python benchmarks/bench_train.py --out $OUT/bench_train.json

CPU smoke check (tiny network, a few steps, no compile)::

    python benchmarks/bench_train.py --quick --device cpu --out /tmp/bench_train.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from mogsim.devices import resolve_device  # noqa: E402
from mogsim.io import write_json  # noqa: E402
from mogsim.nets import network_config  # noqa: E402
from mogsim.provenance import provenance  # noqa: E402
from mogsim.training import DistContext, RuntimeOptions, TrainConfig, Trainer  # noqa: E402
from mogsim.training.loop import float32_mode  # noqa: E402

#: mode -> (bf16 autocast, tf32, channels_last, compile)
MODES: dict[str, tuple[bool, bool, bool, bool]] = {
    "fp32": (False, False, False, False),
    "tf32": (False, True, False, False),
    "bf16": (True, False, False, False),
    "bf16+cl": (True, False, True, False),
    "bf16+compile": (True, False, False, True),
    "bf16+compile+cl": (True, False, True, True),
}
DEFAULT_MODES = ("fp32", "tf32", "bf16", "bf16+cl", "bf16+compile+cl")
#: the mode ``mogsim train`` uses on CUDA by default (its rows get ``default: true``)
TRAINER_CUDA_DEFAULT = "bf16+compile"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(arch: str, mode: str, *, device: torch.device, batch: int, steps: int, warmup: int,
              max_seconds: float, image_shape: tuple[int, ...], net_overrides: dict[str, Any],
              precond: str) -> dict[str, Any]:
    """Throughput of one (network, mode) pair; never raises (errors are recorded)."""
    bf16, tf32, channels_last, compile_ = MODES[mode]
    row: dict[str, Any] = {"arch": arch, "mode": mode, "bf16": bf16, "tf32": tf32, "channels_last": channels_last,
                           "compile": compile_, "batch": batch, "default": mode == TRAINER_CUDA_DEFAULT}
    trainer = None
    try:
        g = torch.Generator().manual_seed(0)
        data = torch.randint(0, 256, (max(4 * batch, 1024), *image_shape), generator=g, dtype=torch.uint8)
        cfg = TrainConfig(net=network_config(arch, image_shape, **net_overrides), precond=precond, batch=batch,
                          bf16=bf16, tf32=tf32)
        trainer = Trainer(cfg, data, runtime=RuntimeOptions(compile=compile_, channels_last=channels_last,
                                                            progress="none"), ctx=DistContext(device=device))
        row["parameters"] = trainer.num_parameters
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with float32_mode(device, tf32):
            t0 = time.perf_counter()
            for k in range(warmup):
                trainer.train_step(k)
            _sync(device)
            row["warmup_s"] = time.perf_counter() - t0
            done, t0 = 0, time.perf_counter()
            while done < steps:
                trainer.train_step(warmup + done)
                done += 1
                if done % 10 == 0:
                    _sync(device)
                    if time.perf_counter() - t0 > max_seconds:
                        break
            loss, _ = trainer.train_step(warmup + done)
            done += 1
            _sync(device)
            elapsed = time.perf_counter() - t0
        row.update(status="ok", steps=done, seconds=elapsed, images_per_s=done * batch / elapsed,
                   ms_per_step=1000 * elapsed / done, last_loss=float(loss) / batch)
        if device.type == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    except Exception as exc:  # noqa: BLE001 - record and continue (compile failures, OOM, ...)
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
                   traceback=traceback.format_exc()[-2000:])
    finally:
        del trainer
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if compile_:
            torch._dynamo.reset()
    return row


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a markdown table (images/s and speed-up over fp32 of the same network)."""
    base = {r["arch"]: r["images_per_s"] for r in rows if r["mode"] == "fp32" and r.get("status") == "ok"}
    lines = ["| network | params | mode | images/s | ms/step | vs fp32 | warm-up s | peak GiB | status |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        ok = r.get("status") == "ok"
        ips = f"{r['images_per_s']:,.0f}" if ok else "-"
        ms = f"{r['ms_per_step']:.1f}" if ok else "-"
        rel = f"{r['images_per_s'] / base[r['arch']]:.2f}x" if ok and r["arch"] in base else "-"
        warm = f"{r['warmup_s']:.1f}" if "warmup_s" in r else "-"
        mem = f"{r['peak_memory_gib']:.2f}" if "peak_memory_gib" in r else "-"
        params = f"{r['parameters'] / 1e6:.2f}M" if "parameters" in r else "-"
        status = r.get("status", "?") if ok else f"{r.get('status')}: {r.get('error', r.get('reason', ''))[:80]}"
        lines.append(f"| {r['arch']} | {params} | {r['mode']} | {ips} | {ms} | {rel} | {warm} | {mem} | {status} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON result file.")
    p.add_argument("--archs", default="unet-64,unet-small", help="Comma-separated registry names.")
    p.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"Comma-separated, from {', '.join(MODES)}.")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=300, help="Timed steps per configuration (at most).")
    p.add_argument("--warmup", type=int, default=15, help="Untimed steps first (compilation happens here).")
    p.add_argument("--max-seconds", type=float, default=25.0, help="Cap on the timed part per configuration.")
    p.add_argument("--budget-seconds", type=float, default=330.0, help="Skip configurations starting after this.")
    p.add_argument("--compile-reserve", type=float, default=90.0, help="Start a compiled configuration only while "
                   "this many seconds of --budget-seconds are left.")
    p.add_argument("--precond", default="vp", choices=("vp", "edm"))
    p.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    p.add_argument("--quick", action="store_true", help="CPU smoke check: a width-16 two-level unet-tiny on 3x8x8, "
                   "batch 4, 2 steps, fp32 and bf16 (checks the script, measures nothing useful).")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"bench_train: unknown mode(s) {unknown}; choose from {list(MODES)}")
    image_shape: tuple[int, ...] = (3, 32, 32)
    overrides: dict[str, Any] = {}
    batch, steps, warmup = args.batch, args.steps, args.warmup
    if args.quick:
        archs, modes, image_shape = ["unet-tiny"], ["fp32", "bf16"], (3, 8, 8)
        overrides = {"model_channels": 16, "channel_mult": (1, 2), "attn_resolutions": (4,)}
        batch, steps, warmup = 4, 2, 1
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    # Uncompiled configurations first (cheap), then the compiled ones (each compiles for a minute or more); a
    # compiled configuration starts only while --compile-reserve seconds of the budget are left.
    plan = [(a, m) for a in archs for m in modes if not MODES[m][3]] + [(a, m) for a in archs for m in modes
                                                                        if MODES[m][3]]
    for arch, mode in plan:
        elapsed = time.perf_counter() - started
        reserve = args.compile_reserve if MODES[mode][3] else 0.0
        if elapsed > args.budget_seconds - reserve:
            rows.append({"arch": arch, "mode": mode, "status": "skipped",
                         "reason": f"time budget: {elapsed:.0f} s spent of {args.budget_seconds:.0f} s"})
            print(f"[bench] {arch:10s} {mode:16s} skipped (time budget)", flush=True)
            continue
        if MODES[mode][3] and device.type != "cuda":
            print(f"[bench] {arch} {mode}: compiling on CPU needs a C++ toolchain and takes minutes", flush=True)
        row = bench_one(arch, mode, device=device, batch=batch, steps=steps, warmup=warmup,
                        max_seconds=args.max_seconds, image_shape=image_shape, net_overrides=overrides,
                        precond=args.precond)
        rows.append(row)
        shown = f"{row['images_per_s']:,.0f} img/s" if row["status"] == "ok" else row.get("error", "")
        print(f"[bench] {arch:10s} {mode:16s} {row['status']:7s} {shown}", flush=True)
    rows.sort(key=lambda r: (archs.index(r["arch"]), modes.index(r["mode"])))
    result = {
        "benchmark": "bench_train", "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor()
                                                                                        or "cpu"),
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "batch": batch, "steps": steps, "warmup": warmup, "precond": args.precond, "image_shape": list(image_shape),
        "quick": bool(args.quick), "total_seconds": time.perf_counter() - started,
        "provenance": provenance(device), "results": rows,
    }
    write_json(args.out, result)
    print(markdown_table(rows))
    print(f"[bench] wrote {args.out} ({result['total_seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
