"""Predicted hemorrhage volume on CT series that hold no acute bleed (should be about 0 ml).

python benchmarks/false_positives.py SERIES_DIR [SERIES_DIR ...] [--model PATH] [--device cpu] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rich.table import Table

from ichvol.console import output_console
from ichvol.dicom import load_ct_image
from ichvol.errors import NotAHeadCTError
from ichvol.labels import Hemorrhage
from ichvol.measure import measure_labels
from ichvol.models import default_model_path
from ichvol.models.evaluation.cli import parse_settings
from ichvol.models.predictor import CascadePredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("series", type=Path, nargs="+", help="DICOM folders of hemorrhage-free head CT")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="change an inference setting, as `ichvol evaluate --set` does (repeatable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    predictor = CascadePredictor.from_folder(args.model or default_model_path(), device=args.device)
    overrides = parse_settings(args.settings)
    if overrides:
        predictor = predictor.with_inference_settings(overrides)
    rows = []
    for folder in args.series:
        image, _ = load_ct_image(folder)
        described = {"series": folder.name, "shape_zyx": list(image.hu.shape),
                     "tilt_degrees": round(image.geometry.tilt_degrees, 2)}
        try:
            prediction = predictor.predict(image)
        except NotAHeadCTError as exc:  # refused before the networks run: no false hemorrhage reported
            rows.append({**described, "false_positive_ml": None, "per_type_ml": {}, "lesions": None,
                         "stage2_rois": None, "seconds": None, "refused": str(exc)})
            continue
        measured = measure_labels(prediction.labels, image.geometry)
        rows.append(
            {
                **described,
                "false_positive_ml": round(measured.total_ml, 4),
                "per_type_ml": {t.name: round(m.volume_ml, 4) for t, m in measured.per_type.items()},
                "lesions": sum(len(m.lesions) for m in measured.per_type.values()),
                "stage2_rois": len(prediction.rois),
                "seconds": round(prediction.seconds_total, 2),
            }
        )

    changed = "".join(f", {k}={json.dumps(v)}" for k, v in overrides.items())
    table = Table(title=f"False positives ({predictor.algorithm.name} {predictor.algorithm.version}, {args.device}"
                        f"{changed})")
    for column in ("series", "slices", "tilt", "predicted ml", "per type", "lesions", "s"):
        table.add_column(column, justify="left" if column in ("series", "per type") else "right")
    for row in rows:
        refused = "refused" in row
        per_type = ", ".join(f"{k} {v:.2f}" for k, v in row["per_type_ml"].items()) or "-"
        if refused:
            per_type = "refused: not a head CT (no cranial cavity)"
        table.add_row(
            row["series"],
            str(row["shape_zyx"][0]),
            f"{row['tilt_degrees']:.1f}",
            "-" if refused else f"{row['false_positive_ml']:.3f}",
            per_type,
            "-" if refused else str(row["lesions"]),
            "-" if refused else f"{row['seconds']:.1f}",
        )
    output_console().print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": str(args.model or default_model_path()),
                    "device": args.device,
                    "inference_settings_changed": overrides,
                    "types": [t.name for t in Hemorrhage],
                    "series": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
