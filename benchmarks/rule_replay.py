"""Try stage 2's threshold and the post-processing rules on a test set without running the networks again.

`cache` runs both networks once per case and keeps their outputs (`CascadePredictor.network_outputs`: stage 1's
findings, stage 2's probabilities over each ROI); `score` applies the threshold and the rules to them with the
model's own settings and with each variant, and scores every case as `ichvol evaluate` does. A variant takes
seconds per case instead of the networks' minutes, and the model's own row reproduces `ichvol evaluate`.

    python benchmarks/rule_replay.py cache TESTSET CACHE [--model PATH] [--set KEY=VALUE ...]
    python benchmarks/rule_replay.py score TESTSET CACHE [--variant "NAME KEY=VALUE [KEY=VALUE ...]" ...]
        [--workers N] [--json OUT]

Only the settings that act after the networks can be varied (`AFTER_NETWORK_SETTINGS`); one that changes what
the networks see (a ROI margin, test-time augmentation) needs a cache of its own (`cache --set`). The cache is a
folder of pickles written by this script: load only caches you wrote.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from ichvol.console import figures_table, output_console
from ichvol.errors import NotAHeadCTError
from ichvol.models import default_model_path
from ichvol.models.config import ModelConfig
from ichvol.models.evaluation.cli import parse_settings
from ichvol.models.evaluation.run import score_case
from ichvol.models.evaluation.summary import summary_dict
from ichvol.models.evaluation.testset import TestCase, load_testset
from ichvol.models.folder import read_config
from ichvol.models.predictor import AFTER_NETWORK_SETTINGS, CascadePredictor

STAMP = "cache.json"
AS_SHIPPED = "as shipped"


def cache(testset: Path, folder: Path, model: Path, settings: dict[str, object], console: Console) -> None:
    predictor = CascadePredictor.from_folder(model, device="cpu")
    if settings:
        predictor = predictor.with_inference_settings(settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STAMP).write_text(json.dumps({"model": str(model.resolve()), "settings": settings,
                                            "config": predictor.config.to_dict()}, indent=1))
    for case in track(load_testset(testset).cases, description="networks", console=console):
        image, _, _ = case.load()
        try:
            kept = {"outputs": predictor.network_outputs(image), "refused": ""}
        except NotAHeadCTError as exc:
            kept = {"outputs": None, "refused": str(exc)}
        with open(folder / f"{case.name}.pkl", "wb") as file:
            pickle.dump(kept, file, protocol=pickle.HIGHEST_PROTOCOL)


def score(testset: Path, folder: Path, variants: dict[str, dict[str, object]], workers: int) -> dict[str, dict]:
    """{variant: summary.json-like dict} over the cases of `testset` in the cache."""
    stamp = json.loads((folder / STAMP).read_text())
    tests = load_testset(testset)
    missing = [case.name for case in tests.cases if not (folder / f"{case.name}.pkl").exists()]
    if missing:
        raise SystemExit(f"{folder} holds no network outputs for {len(missing)} case(s) of {testset}, e.g. "
                         f"{missing[0]}: run `cache` on this test set first")
    jobs = [(case, folder, stamp["config"], variants, tests.binary) for case in tests.cases]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        per_case = list(pool.map(_score_case, jobs))
    return {name: summary_dict([results[name] for results in per_case], binary=tests.binary,
                               extra={"variant": settings, "cache": str(folder)})
            for name, settings in variants.items()}


def _score_case(job: tuple[TestCase, Path, dict, dict[str, dict[str, object]], bool]) -> dict:
    case, folder, config, variants, binary = job
    image, truth, truth_geometry = case.load()
    with open(folder / f"{case.name}.pkl", "rb") as file:
        kept = pickle.load(file)
    base = CascadePredictor(ModelConfig.from_dict(config), networks={})
    results = {}
    for name, settings in variants.items():
        if kept["outputs"] is None:
            labels = np.zeros(np.shape(truth), dtype=np.uint8)
        else:
            labels = base.with_inference_settings(settings).labels_from(kept["outputs"], image)
        results[name] = score_case(case.name, np.asarray(truth).astype(np.uint8), labels, truth_geometry,
                                   binary=binary, declared_types=case.declared_types)
    return results


def parse_variants(texts: list[str]) -> dict[str, dict[str, object]]:
    variants: dict[str, dict[str, object]] = {AS_SHIPPED: {}}
    for text in texts:
        name, *assignments = text.split()
        if not assignments:
            raise SystemExit(f"variant {text!r}: expected a name, then KEY=VALUE settings")
        settings = parse_settings(assignments)
        unknown = [key for key in settings if key.removeprefix("cascade.") not in AFTER_NETWORK_SETTINGS
                   or not key.startswith("cascade.")]
        if unknown:
            raise SystemExit(f"variant {name}: {', '.join(unknown)} changes what the networks see or is not a "
                             f"setting; replayable: {', '.join('cascade.' + k for k in AFTER_NETWORK_SETTINGS)}. "
                             "Cache with `cache --set` for the others")
        variants[name] = settings
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("cache", "score"))
    parser.add_argument("testset", type=Path)
    parser.add_argument("cache", type=Path, help="folder of the networks' outputs")
    parser.add_argument("--model", type=Path, default=None, help="cache: the model folder (default: shipped)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="cache: an inference setting changed for the networks, as `ichvol evaluate --set`")
    parser.add_argument("--variant", action="append", default=[], metavar='"NAME KEY=VALUE ..."',
                        help="score: settings after the networks to try (repeatable)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="score: write every variant's summary here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    console = output_console()
    if args.command == "cache":
        read_config(args.model or default_model_path())  # a clear error for a folder that is no model
        cache(args.testset, args.cache, args.model or default_model_path(), parse_settings(args.settings), console)
        return
    if not (args.cache / STAMP).exists():
        sys.exit(f"{args.cache} is not a cache written by `rule_replay.py cache`")
    summaries = score(args.testset, args.cache, parse_variants(args.variant), args.workers)
    header = ("variant", "mean DSC", "95% interval", "precision", "recall", "volume MAE ml",
              "false ml, hemorrhage-free")
    rows = []
    for name, summary in summaries.items():
        interval = summary.get("dsc_mean_ci95")
        rows.append((name, _fmt(summary["dsc_mean"]), "-" if not interval else f"{interval[0]:.3f}-{interval[1]:.3f}",
                     _fmt(summary["precision_mean"]), _fmt(summary["recall_mean"]),
                     _fmt(summary["volume_mae_ml_model"]), _fmt(summary["false_positive_ml_mean_hemorrhage_free"])))
    table = figures_table(f"{args.testset} ({summaries[AS_SHIPPED]['n_cases']} cases)", header, rows)
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=1, default=lambda o: asdict(o)))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
