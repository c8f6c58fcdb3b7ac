"""`ichvol synth`: write a synthetic head-CT dataset (DICOM studies, NIfTI images and labels, truth)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import InputError
from ..labels import Hemorrhage

console = Console(stderr=True)
FORMAT_CHOICES = {"dicom": ("dicom",), "nifti": ("nifti",), "both": ("dicom", "nifti")}


def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (dicom/, images/, labels/, truth/)."),
    cases: int = typer.Option(..., "--cases", help="Number of cases to write."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed: the same seed writes the same bytes."),
    format: str = typer.Option("both", "--format", help="dicom, nifti or both."),
    types: str = typer.Option(",".join(Hemorrhage.__members__), "--types",
                              help="Hemorrhage types that may appear, e.g. IPH,IVH."),
    lesion_masks: Path | None = typer.Option(None, "--lesion-masks",
                                             help="Folder of real binary masks (*.nii.gz) for IPH/IVH shapes."),
    no_hemorrhage: float = typer.Option(0.1, "--no-hemorrhage", help="Fraction of cases without hemorrhage."),
    tilt: bool = typer.Option(True, "--tilt/--no-tilt", help="Allow gantry tilt."),
    extra_series: bool = typer.Option(True, "--extra-series/--no-extra-series",
                                      help="Add scout, bone-kernel and dose-report series to some studies."),
    slices: int | None = typer.Option(None, "--slices", hidden=True, help="Fixed slice count (small test cases)."),
    size: int | None = typer.Option(None, "--size", hidden=True, help="Square matrix size (small test cases)."),
) -> None:
    """Write N realistic synthetic head CT cases with hemorrhage labels and true volumes."""
    from ..synth import SynthOptions, write_dataset

    if format not in FORMAT_CHOICES:
        raise InputError(f"--format must be one of {', '.join(FORMAT_CHOICES)}, got {format!r}")
    if cases < 1:
        raise InputError(f"--cases must be at least 1, got {cases}")
    try:
        chosen = tuple(Hemorrhage.parse_list(types))
    except ValueError as exc:
        raise InputError(f"--types: {exc}") from exc
    if not chosen and no_hemorrhage < 1.0:
        raise InputError("--types names no hemorrhage type; give at least one of IPH,IVH,SAH,SDH,EDH")
    if lesion_masks is not None and not lesion_masks.is_dir():
        raise InputError(f"--lesion-masks: {lesion_masks} is not a folder")
    options = SynthOptions(types=chosen, p_no_hemorrhage=no_hemorrhage, allow_tilt=tilt,
                           non_target_series=extra_series, lesion_masks=lesion_masks, slices=slices, size=size)
    columns = (TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=cases)

        def advance(_index: int, truth: dict) -> None:
            progress.update(task, advance=1,
                            description=f"{truth['case_id']} {truth['classification']} {truth['total_ml']:.1f} ml")

        ids = write_dataset(out, cases, seed, FORMAT_CHOICES[format], options, progress=advance)
    console.print(f"wrote {len(ids)} cases to {out}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
