"""Seconds and peak memory of inference on one synthetic 28x512x512 study: the cascade (stage 1 and stage 2
apart) against a plain single-stage full-resolution sliding window of the same network.

Each variant runs in a fresh subprocess, so that its peak resident memory (VmHWM; CPU) or peak CUDA
allocation (torch.cuda.max_memory_allocated) is its own. "after load" is the peak once the model and the
study are loaded, before the first prediction.

    python benchmarks/bench_inference.py [--model PATH] [--device cpu|cuda] [--repeats 3]
        [--baseline-repeats 1] [--threads 2] [--seed 20260401] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("cascade", "single-stage")


def make_study(path: Path, seed: int) -> dict:
    from ichvol.nifti import write_volume
    from ichvol.synth import SynthOptions, generate_case

    case = generate_case(seed, SynthOptions(slices=28, p_no_hemorrhage=0.0, allow_tilt=False))
    write_volume(path, case.hu, case.geometry)
    return {"seed": seed, "shape_zyx": list(case.hu.shape), "hemorrhage_ml": _volume(case)}


def _volume(case) -> float:
    return float((case.labels > 0).sum(axis=(1, 2)) @ case.geometry.voxel_volumes_ml())


def peak_rss_mb() -> float:
    """This process's peak resident memory. /proc's VmHWM starts afresh at exec; ru_maxrss (the fallback off
    Linux) keeps the parent's peak across fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(variant: str, image_path: Path, model: Path | None, device: str, repeats: int, threads: int) -> dict:
    """Runs in the subprocess: load, predict `repeats` times, report timings and peak memory."""
    import torch

    from ichvol.image import CTImage
    from ichvol.models import default_model_path
    from ichvol.models.predictor import CascadePredictor
    from ichvol.nifti import read_volume

    torch.set_num_threads(threads)
    hu, geometry = read_volume(image_path)
    image = CTImage(hu, geometry)
    started = time.perf_counter()
    predictor = CascadePredictor.from_folder(model or default_model_path(), device=device)
    load_seconds = time.perf_counter() - started
    rss_loaded_mb = peak_rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    runs = []
    for _ in range(repeats):
        with torch.inference_mode():
            p = predictor.predict(image) if variant == "cascade" else predictor.predict_single_stage(image)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        runs.append(
            {
                "stage1": p.seconds_stage1,
                "stage2": p.seconds_stage2,
                "total": p.seconds_total,
                "rois": len(p.rois),
                "predicted_ml": float((p.labels > 0).sum(axis=(1, 2)) @ geometry.voxel_volumes_ml()),
            }
        )
    out = {
        "variant": variant,
        "model": predictor.algorithm.name,
        "model_version": predictor.algorithm.version,
        "load_seconds": load_seconds,
        "runs": runs,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_load_mb": rss_loaded_mb,
    }
    if device.startswith("cuda"):
        out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def run_variant(variant: str, image_path: Path, args: argparse.Namespace) -> dict:
    repeats = args.repeats if variant == "cascade" else args.baseline_repeats
    command = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--image",
        str(image_path),
        "--device",
        args.device,
        "--repeats",
        str(repeats),
        "--threads",
        str(args.threads),
    ]
    if args.model:
        command += ["--model", str(args.model)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(result: dict) -> dict:
    runs = result["runs"]
    median = {key: statistics.median(r[key] for r in runs) for key in ("stage1", "stage2", "total")}
    return {**result, "median_seconds": median, "first_total_seconds": runs[0]["total"]}


def print_table(results: list[dict], header: dict) -> None:
    from ichvol.console import figures_table, output_console

    memory = "peak CUDA MB" if header["device"].startswith("cuda") else "peak RSS MB"
    title = (f"Inference on {header['study']['shape_zyx']} ({header['device']}, "
             f"{header['threads']} threads, load average {header['load_average_1_5_15'][0]})")
    # seconds are medians over the runs
    columns = ("variant", "stage 1 s", "stage 2 s", "total s", "runs", "first run s", "MB after load", memory, "ROIs",
               "predicted ml")
    rows = []
    for r in results:
        peak = r.get("peak_cuda_allocated_mb", r["peak_rss_mb"])
        m = r["median_seconds"]
        rows.append((
            r["variant"],
            f"{m['stage1']:.2f}",
            f"{m['stage2']:.2f}",
            f"{m['total']:.2f}",
            str(len(r["runs"])),
            f"{r['first_total_seconds']:.2f}",
            f"{r['rss_after_load_mb']:.0f}",
            f"{peak:.0f}",
            str(r["runs"][-1]["rois"]),
            f"{r['runs'][-1]['predicted_ml']:.2f}",
        ))
    output_console().print(figures_table(title, columns, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-repeats", type=int, default=1, help="repeats of the (slow) single-stage run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20260401)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.image, args.model, args.device, args.repeats, args.threads)))
        return

    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        image_path = Path(tmp) / "study.nii.gz"
        study = make_study(image_path, args.seed)
        results = [summarise(run_variant(v, image_path, args)) for v in args.variants.split(",")]
    header = {
        "study": study,
        "device": args.device,
        "threads": args.threads,
        "repeats": {"cascade": args.repeats, "single-stage": args.baseline_repeats},
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, {os.cpu_count()} CPUs",
        "load_average_1_5_15": load_before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    print_table(results, header)
    if args.json:
        args.json.write_text(json.dumps({**header, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
