"""`ichvol encode`: a label map on a DICOM study -> DICOM SEG + SR (+ measurements.json)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ..console import output_console

if TYPE_CHECKING:
    from ..results import ResultFiles

console = output_console()


def results_table(result: ResultFiles) -> Table:
    """Volumes per type: from the mask and by ABC/2 (plain C and Kothari's weighted C)."""
    table = Table(title=f"Hemorrhage volumes ({result.measurements.classification()})")
    table.add_column("type")
    table.add_column("mask (ml)", justify="right")
    table.add_column("ABC/2 (ml)", justify="right")
    table.add_column("ABC/2 Kothari (ml)", justify="right")
    table.add_column("lesions", justify="right")
    for hemorrhage, m in sorted(result.measurements.per_type.items()):
        table.add_row(
            hemorrhage.name,
            f"{m.volume_ml:.2f}",
            f"{m.abc2_ml:.2f}",
            f"{m.abc2_kothari_ml:.2f}",
            str(len(m.lesions)),
        )
    total = result.measurements
    table.add_row(
        "total",
        f"{total.total_ml:.2f}",
        f"{total.total_abc2_ml:.2f}",
        f"{total.total_abc2_kothari_ml:.2f}",
        "",
        style="bold",
    )
    return table


def encode(
    study_dir: Annotated[
        Path, typer.Argument(help="Folder with the DICOM study (the CT series is selected)")
    ],
    labels: Annotated[
        Path,
        typer.Argument(
            help="Label map (NIfTI) on the series' grid: 0 background, 1 IPH, 2 IVH, 3 SAH, 4 SDH, 5 EDH"
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder for seg.dcm, sr.dcm, measurements.json")
    ],
    manual: Annotated[
        bool,
        typer.Option(
            "--manual/--automatic", help="Segments made by a person (reference annotation) or by an algorithm"
        ),
    ] = True,
    algorithm_name: Annotated[
        str, typer.Option(help="Name recorded as the segmentation algorithm / observer")
    ] = "ichvol-manual",
    algorithm_version: Annotated[str | None, typer.Option(help="Version recorded with the name")] = None,
) -> None:
    """Write a DICOM SEG and a DICOM SR (TID 1500) for a hemorrhage label map on a CT study."""
    from ..encode import encode_study  # heavy imports (highdicom, scipy) only when the command runs
    from ..results import AlgorithmInfo

    algorithm = AlgorithmInfo(name=algorithm_name, automatic=not manual)
    if algorithm_version:
        algorithm = AlgorithmInfo(name=algorithm_name, version=algorithm_version, automatic=not manual)
    result = encode_study(study_dir, labels, out, algorithm)
    console.print(results_table(result))
    if result.seg_path is None:
        console.print("no hemorrhage labelled: no SEG written")
    else:
        console.print(f"SEG: {result.seg_path}")
    console.print(f"SR:  {result.sr_path}")
    console.print(f"measurements: {result.sr_path.parent / 'measurements.json'}")


def register(app: typer.Typer) -> None:
    app.command("encode")(encode)
