"""`ichvol synth`: write a synthetic head-CT dataset (DICOM studies, NIfTI images and labels, truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..console import output_console
from ..errors import InputError
from ..labels import Hemorrhage

console = output_console(stderr=True)
ALL_TYPES = ",".join(Hemorrhage.__members__)
FORMAT_CHOICES = {"dicom": ("dicom",), "nifti": ("nifti",), "both": ("dicom", "nifti")}


def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (dicom/, images/, labels/, truth/).")],
    cases: Annotated[int, typer.Option("--cases", help="Number of cases to write.")],
    seed: Annotated[int, typer.Option("--seed", help="Dataset seed: the same seed writes the same bytes.")] = 0,
    format: Annotated[str, typer.Option("--format", help="dicom, nifti or both.")] = "both",
    types: Annotated[str, typer.Option("--types", help="Hemorrhage types that may appear, e.g. IPH,IVH.")] = ALL_TYPES,
    lesion_masks: Annotated[Path | None, typer.Option(
        "--lesion-masks", help="Folder of real binary masks (*.nii.gz) that shape IPH/IVH.")] = None,
    no_hemorrhage: Annotated[float, typer.Option(
        "--no-hemorrhage", help="Fraction of cases without hemorrhage.")] = 0.1,
    tilt: Annotated[bool, typer.Option("--tilt/--no-tilt", help="Allow gantry tilt.")] = True,
    extra_series: Annotated[bool, typer.Option(
        "--extra-series/--no-extra-series",
        help="Add scout, bone-kernel and dose-report series to some studies.")] = True,
    slab: Annotated[bool, typer.Option(
        "--slab-partial-volume/--no-slab-partial-volume",
        help="Average each slice over its thickness (bone partial volume at the vertex and skull base); "
             "3x slower.")] = False,
    skull_halo_max: Annotated[float, typer.Option(
        "--skull-halo-max",
        help="Blur the inner table up to this many times more than a modern scanner does (drawn per case, "
             "1-4; older scanners and thick slices): hard negatives for subdural films.")] = 1.0,
    workers: Annotated[int, typer.Option("--workers", help="Cases generated in parallel processes.")] = 1,
    slices: Annotated[int | None, typer.Option("--slices", hidden=True, help="Fixed slice count (tests).")] = None,
    size: Annotated[int | None, typer.Option("--size", hidden=True, help="Square matrix size (tests).")] = None,
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
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if lesion_masks is not None and not lesion_masks.is_dir():
        raise InputError(f"--lesion-masks: {lesion_masks} is not a folder")
    options = SynthOptions(types=chosen, p_no_hemorrhage=no_hemorrhage, allow_tilt=tilt,
                           non_target_series=extra_series, lesion_masks=lesion_masks, slices=slices, size=size,
                           slab_partial_volume=slab, skull_halo_max=skull_halo_max)
    columns = (TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=cases)

        def advance(_index: int, truth: dict) -> None:
            progress.update(task, advance=1,
                            description=f"{truth['case_id']} {truth['classification']} {truth['total_ml']:.1f} ml")

        ids = write_dataset(out, cases, seed, FORMAT_CHOICES[format], options, progress=advance, workers=workers)
    console.print(f"wrote {len(ids)} cases to {out}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
