"""`ichvol evaluate`: registered on the main app by ichvol/cli/model_cmd.py via register_evaluate(app)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ichvol.console import figures_table, output_console
from ichvol.errors import InputError

from .report import BY_VOLUME_HEADER, TABLE_HEADER, by_volume_rows, dsc_interval_line, table_rows, write_report
from .run import evaluate_testset
from .summary import summarize, summary_dict
from .testset import load_testset


def _load_predictor(model: Path | None, device: str):
    from ichvol.models import default_model_path
    from ichvol.models.predictor import CascadePredictor

    return CascadePredictor.from_folder(model or default_model_path(), device=device)


def evaluate_command(
    testset: Annotated[
        Path,
        typer.Option(
            "--testset",
            help="folder with images/<case>.nii.gz, labels/<case>.nii.gz and optionally dataset.json; or one "
            "folder per case holding a DICOM study with its SEG",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="folder for summary.json, cases.csv, summary.md and plots")],
    model: Annotated[Path | None, typer.Option("--model", help="model folder (default: the shipped model)")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda")] = "auto",
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE, repeatable: evaluate the model with an inference setting changed, e.g. "
            "cascade.stage2_min_probability=0.5, cascade.component_median_hu=null, stage1.in_plane_spacing_mm=2.4 "
            "(VALUE as JSON; recorded in summary.json)",
        ),
    ] = None,
) -> None:
    """Segment every case of a labelled test set and compare volumes with the truth and with ABC/2."""
    console = output_console()
    overrides = parse_settings(settings or [])
    tests = load_testset(testset)  # checks every file before the model is loaded
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    predictor = _load_predictor(model, device)
    title = f"Evaluation on {testset.name}"
    if overrides:
        predictor = predictor.with_inference_settings(overrides)
        title += ", inference settings changed: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())
        console.print(title)
    console.print(f"{len(tests.cases)} cases, {'binary' if tests.binary else 'multi-class'} labels")

    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("evaluating", total=len(tests.cases))
        for result in evaluate_testset(tests, predictor):
            results.append(result)
            outcome = "refused, not a head CT" if result.refused else f"DSC {result.dsc:.3f}"
            progress.update(task, advance=1, description=f"{result.name}: {outcome}")

    rows = summarize(results)
    algorithm = getattr(predictor, "algorithm", None)
    extra = {
        "testset": str(testset.resolve()),
        "model": str(model.resolve()) if model else "default",
        "algorithm": asdict(algorithm) if algorithm is not None else None,
        "inference_settings_changed": overrides,
    }
    summary = summary_dict(results, binary=tests.binary, extra=extra)
    write_report(out, results, rows, summary, title=title)

    console.print(figures_table(f"{title} ({len(results)} cases)", TABLE_HEADER, table_rows(rows)))
    console.print(dsc_interval_line(summary))
    if summary["dsc_mean"] is not None:
        console.print(figures_table("By true volume", BY_VOLUME_HEADER, by_volume_rows(summary)))
    refused = [r.name for r in results if r.refused]
    if refused:
        console.print(f"[yellow]{len(refused)} case(s) refused by the model as not a head CT, scored as finding "
                      f"nothing:[/yellow] {', '.join(refused)}")
    console.print(f"wrote {out}/summary.json, cases.csv, summary.md and plots")


def parse_settings(assignments: list[str]) -> dict[str, object]:
    """["cascade.x=0.5", ...] -> {"cascade.x": 0.5}: each VALUE read as JSON, or as a plain string where it is
    not JSON (cascade.blend_mode=gaussian)."""
    settings: dict[str, object] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {assignment!r}: expected KEY=VALUE, e.g. cascade.stage2_min_probability=0.5")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        settings[key.strip()] = value
    return settings


def register_evaluate(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
