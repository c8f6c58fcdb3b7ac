"""A synthetic dataset on disk: DIR/dicom/<case>/, DIR/images/<case>.nii.gz, DIR/labels/<case>.nii.gz and
DIR/truth/<case>.json, the layout that train, evaluate and encode read."""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..nifti import write_volume
from .case import generate_case
from .dicom_writer import StudyIdentity, write_dicom_study
from .options import SynthOptions

log = logging.getLogger(__name__)
FORMATS = frozenset({"dicom", "nifti"})


def case_id(index: int) -> str:
    return f"case{index:04d}"


def case_seed(seed: int, index: int) -> int:
    """The seed of case `index` of a dataset made with `seed` (independent streams per case)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint32)[0])


def write_case(out: Path, index: int, seed: int, formats: frozenset[str], options: SynthOptions) -> dict:
    """Generate and write one case; returns its truth sidecar."""
    name, cseed = case_id(index), case_seed(seed, index)
    case = generate_case(cseed, options)
    ident = StudyIdentity.of(name, cseed)
    truth = {"case_id": name, **case.truth, "dataset_seed": seed,
             "study_instance_uid": ident.study_uid, "series_instance_uid": ident.series_uid,
             "frame_of_reference_uid": ident.frame_of_reference_uid}
    if "dicom" in formats:
        folder = out / "dicom" / name
        if folder.is_dir():
            for stale in folder.glob("*.dcm"):
                stale.unlink()
        files = write_dicom_study(case, folder, name, cseed, options.non_target_series)
        truth["dicom_files"] = len(files)
    if "nifti" in formats:
        for sub in ("images", "labels"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        write_volume(out / "images" / f"{name}.nii.gz", case.hu, case.geometry)
        write_volume(out / "labels" / f"{name}.nii.gz", case.labels, case.geometry)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    (out / "truth" / f"{name}.json").write_text(json.dumps(truth, indent=2) + "\n")
    log.info("%s: %s, %.2f ml", name, truth["classification"], truth["total_ml"])
    return truth


def _single_threaded() -> None:
    import torch

    torch.set_num_threads(1)  # the processes are the parallelism


def write_dataset(out: Path, cases: int, seed: int, formats=("dicom", "nifti"), options: SynthOptions | None = None,
                  progress: Callable[[int, dict], None] | None = None, workers: int = 1) -> list[str]:
    """Write `cases` cases into `out`; case i uses case_seed(seed, i), so the bytes do not depend on
    `workers` (parallel processes). `progress(i, truth)` is called as each case is done. Returns the ids."""
    formats = frozenset(formats)
    if not formats or not formats <= FORMATS:
        raise InputError(f"formats must be some of {sorted(FORMATS)}, got {sorted(formats)}")
    if cases < 1:
        raise InputError(f"the number of cases must be at least 1, got {cases}")
    options = options or SynthOptions()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if workers <= 1 or cases == 1:
        for index in range(cases):
            truth = write_case(out, index, seed, formats, options)
            if progress is not None:
                progress(index, truth)
    else:
        context = multiprocessing.get_context("spawn")  # no forked torch / thread state
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_single_threaded) as pool:
            futures = {pool.submit(write_case, out, i, seed, formats, options): i for i in range(cases)}
            for future in as_completed(futures):
                truth = future.result()
                if progress is not None:
                    progress(futures[future], truth)
    return [case_id(i) for i in range(cases)]
