"""`ichvol train` and `ichvol predict` (and `ichvol evaluate`, registered from ichvol.models.evaluation)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..console import output_console
from ..errors import InputError

console = output_console()


def train(
    data: Annotated[Path, typer.Option("--data", help=(
        "training data: images/<case>.nii.gz + labels/<case>.nii.gz, or one folder per case holding a DICOM "
        "study (CT series + one SEG)"))],
    out: Annotated[Path, typer.Option("--out", help="model folder to write (e.g. models/NAME)")],
    config: Annotated[str | None, typer.Option("--config", help="named config (small, paper) or JSON file")] = None,
    stage: Annotated[str, typer.Option("--stage", help="1, 2 or both")] = "both",
    epochs: Annotated[int | None, typer.Option("--epochs", help="epochs per stage (overrides the config)")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="continue from the folder's last checkpoints")] = False,
    init_from: Annotated[Path | None, typer.Option(
        "--init-from", help="fine-tune: start from this model folder's weights (same architecture); a stage not "
        "trained (--stage 1 or 2) takes its weights unchanged")] = None,
    val_data: Annotated[Path | None, typer.Option(
        "--val-data", help=("separate validation cases (same layouts as --data); all of --data then trains. "
                            "Default: a seeded share of --data"))] = None,
) -> None:
    """Train the two-stage cascade; writes a self-describing model folder. --data is one of two layouts:

    NIfTI: DATA/images/<case>.nii.gz (HU) + DATA/labels/<case>.nii.gz (0 background, 1 IPH ... 5 EDH).

    DICOM + SEG: DATA/<case>/ holding the case's DICOM study: the CT series and one DICOM SEG of it.

    SEG segments get their type from their code or label (IPH, IVH, SAH, SDH, EDH); generic "hemorrhage": IPH.
    """
    from ichvol.models.config import load_config
    from ichvol.models.fit import TrainCallbacks, TrainRequest, train_model

    stages = {"1": (1,), "2": (2,), "both": (1, 2)}.get(stage)
    if stages is None:
        raise InputError(f"--stage must be 1, 2 or both, not {stage!r}")
    if resume and init_from is not None:
        raise InputError("--resume continues a folder's own checkpoints; --init-from starts a new run: pick one")
    request = TrainRequest(Path(data), Path(out), load_config(config) if config else None, stages, epochs, device,
                           resume, init_from, val_data)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console) as progress:
        task = {}

        def on_stage(number: int, first: int, last: int) -> None:
            task["id"] = progress.add_task(f"stage {number}", total=last, completed=first - 1, status="")

        def on_iteration(epoch: int, iteration: int, loss: float) -> None:
            progress.update(task["id"], status=f"epoch {epoch} it {iteration} loss {loss:.4f}")

        def on_epoch(result) -> None:
            own = ("" if math.isnan(result.val_dice) else
                   f", val Dice {result.val_dice:.4f} (foreground {result.val_dice_foreground:.4f})")
            cascade = ("" if math.isnan(result.val_cascade_dsc) else
                       f", cascade DSC {result.val_cascade_dsc:.4f}")
            progress.update(task["id"], completed=result.epoch, status=f"loss {result.train_loss:.4f}{own}")
            progress.console.log(f"stage {result.stage} epoch {result.epoch}: loss {result.train_loss:.4f}"
                                 f"{own}{cascade}, {result.seconds:.0f} s")

        trained = train_model(request, TrainCallbacks(on_stage, on_iteration, on_epoch))
    console.print(f"model {trained.name} {trained.version} written to {out}")


def predict(
    source: Annotated[Path, typer.Argument(help="DICOM study folder or NIfTI image (.nii/.nii.gz)")],
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    model: Annotated[Path | None, typer.Option("--model", help="model folder (default: the shipped model)")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda")] = "auto",
) -> None:
    """Segment hemorrhage; writes labels.nii.gz and, for DICOM input, a DICOM SEG and SR."""
    from ichvol.dicom import load_image
    from ichvol.models import default_model_path
    from ichvol.models.predictor import CascadePredictor
    from ichvol.nifti import write_volume

    image = load_image(Path(source))
    predictor = CascadePredictor.from_folder(model or default_model_path(), device=device)
    prediction = predictor.predict(image)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_volume(out / "labels.nii.gz", prediction.labels, image.geometry)
    written = [out / "labels.nii.gz"]
    if image.datasets:
        from ichvol.encode import write_results
        from ichvol.results import ResultUIDs

        files = write_results(image, prediction.labels, out, ResultUIDs.mint(), predictor.algorithm)
        written += [p for p in (files.seg_path, files.sr_path) if p is not None]
    volumes = prediction.volumes_ml(image.geometry.voxel_volumes_ml())
    threshold = predictor.config.cascade.type_threshold_ml
    table = Table(title=f"{predictor.algorithm.name} {predictor.algorithm.version}")
    table.add_column("type")
    table.add_column("volume (ml)", justify="right")
    for kind, volume in volumes.items():
        table.add_row(kind.name, f"{volume:.2f}")
    table.add_row("total", f"{sum(volumes.values()):.2f}", style="bold")
    console.print(table)
    kinds = [k.name for k, v in volumes.items() if v >= threshold]
    console.print(f"study type: {'+'.join(kinds) if kinds else 'no hemorrhage'}; "
                  f"{len(prediction.rois)} ROI(s); {prediction.seconds_total:.1f} s "
                  f"(stage 1 {prediction.seconds_stage1:.1f} s, stage 2 {prediction.seconds_stage2:.1f} s)")
    for path in written:
        console.print(f"wrote {path}")


def blend(
    fine_tuned: Annotated[Path, typer.Argument(help="model folder of the fine-tuning")],
    base: Annotated[Path, typer.Argument(help="model folder it was fine-tuned from")],
    out: Annotated[Path, typer.Option("--out", help="new model folder")],
    alpha: Annotated[float, typer.Option("--alpha", help="weight of the fine-tuning, 0-1")] = 0.7,
    stage: Annotated[int, typer.Option("--stage", help="the stage to blend, 1 or 2")] = 2,
) -> None:
    """Blend one stage's weights: alpha x fine-tuning + (1 - alpha) x base (WiSE-FT); the rest from FINE_TUNED."""
    from ichvol.models.blend import blend_stage

    if stage not in (1, 2):
        raise InputError(f"--stage must be 1 or 2, got {stage}")
    written = blend_stage(fine_tuned, base, stage, alpha, out)
    console.print(f"wrote {written}: stage {stage} = {alpha:g} x {fine_tuned} + {1 - alpha:g} x {base}")


def type_network(
    base: Annotated[Path, typer.Argument(help="model folder whose stage 2 keeps finding the hemorrhage")],
    donor: Annotated[Path, typer.Argument(help="model folder whose stage 2 becomes the type network")],
    out: Annotated[Path, typer.Option("--out", help="new model folder")],
    types: Annotated[str, typer.Option("--types", help="the types it settles, comma-separated")] = "IVH,SAH",
    adds: Annotated[str, typer.Option("--adds", help="types it may add where stage 2 finds none, "
                                                     "comma-separated (default: none)")] = "",
    min_support: Annotated[float, typer.Option("--min-stage1-support", help="stage 1's hemorrhage probability "
                                                                             "an addition needs, 0-1")] = 0.0,
) -> None:
    """Add a type network: DONOR's stage 2 settles TYPES beside BASE's stage 2 (geometric mean of their type
    probabilities) and, with --adds, may add blood of those types where BASE's stage 2 finds none and stage 1
    supports it; the rest of the mask stays BASE's."""
    from ichvol.models.type_network import TypeNetworkUse, add_type_network

    use = TypeNetworkUse(_names(types), _names(adds) or None, min_support)
    written = add_type_network(base, donor, use, out)
    added = f"; adding {', '.join(use.adds)}" if use.adds else ""
    console.print(f"wrote {written}: {base} with the stage 2 of {donor} settling {', '.join(use.types)}{added}")


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("predict")(predict)
    app.command("blend")(blend)
    app.command("type-network")(type_network)
    try:
        from ichvol.models.evaluation.cli import register_evaluate
    except ImportError:  # the evaluation module is optional at this layer
        return
    register_evaluate(app)
