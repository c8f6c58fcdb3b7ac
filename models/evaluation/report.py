"""The files `ichvol evaluate` writes: summary.json, cases.csv, summary.md and PNG plots."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ichvol.labels import Hemorrhage

from .run import CaseResult
from .summary import GroupSummary

CSV_FIELDS = (
    "name",
    "type",
    "group",
    "dsc",
    "iou",
    "precision",
    "recall",
    "true_volume_ml",
    "predicted_volume_ml",
    "abc2_truth_ml",
    "abc2_truth_kothari_ml",
    "abc2_predicted_ml",
    "abc2_predicted_kothari_ml",
    "seconds",
    "type_agreement",
)
PLOT_FILES = ("bland_altman_model.png", "bland_altman_abc2.png", "volume_scatter.png")


def write_summary_json(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(summary, indent=2) + "\n")


def write_cases_csv(path: Path, results: Sequence[CaseResult]) -> None:
    type_columns = [f"dsc_{t.name}" for t in Hemorrhage if any(t.name in r.dsc_per_type for r in results)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*CSV_FIELDS, *type_columns, "refused"])
        for r in results:
            row = r.to_dict()
            values = [_cell(row[key]) for key in CSV_FIELDS]
            values += [_cell(r.dsc_per_type.get(column[4:])) for column in type_columns]
            writer.writerow([*values, r.refused])


def _cell(value: object) -> object:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else value


def _fmt(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


TABLE_HEADER = (
    "group",
    "cases",
    "DSC %",
    "IoU %",
    "precision %",
    "recall %",
    "model MAE ml",
    "ABC/2 MAE ml",
    "ABC/2 Kothari MAE ml",
    "improvement vs ABC/2 %",
    "s/case",
)


def table_rows(rows: Sequence[GroupSummary]) -> list[tuple[str, ...]]:
    """The summary as text cells, shared by the Markdown file and the rich table of the CLI."""
    return [
        (
            row.group,
            str(row.n_cases),
            _fmt(row.dsc_mean, scale=100),
            _fmt(row.iou_mean, scale=100),
            _fmt(row.precision_mean, scale=100),
            _fmt(row.recall_mean, scale=100),
            _fmt(row.volume_mae_ml_model, 3),
            _fmt(row.volume_mae_ml_abc2, 3),
            _fmt(row.volume_mae_ml_abc2_kothari, 3),
            _fmt(row.mae_improvement_pct_vs_abc2, 1),
            _fmt(row.seconds_per_case, 1),
        )
        for row in rows
    ]


BY_VOLUME_HEADER = ("true volume", "cases", "DSC %", "recall %")


def by_volume_rows(summary: dict) -> list[tuple[str, ...]]:
    """The mean Dice and recall by true volume, one row of `BY_VOLUME_HEADER` cells per volume range."""
    return [(b["range_ml"], str(b["n_cases"]), _fmt(b["dsc_mean"], scale=100), _fmt(b["recall_mean"], scale=100))
            for b in summary["dsc_by_true_volume"]]


def dsc_interval_line(summary: dict) -> str:
    """The mean Dice with its bootstrap interval over cases, in one sentence."""
    if summary.get("dsc_mean") is None:
        return "No case holds hemorrhage: no Dice to report."
    interval = summary.get("dsc_mean_ci95")
    n_bleeding = sum(b["n_cases"] for b in summary.get("dsc_by_true_volume", []))
    spread = (f" (95% bootstrap interval over cases {_fmt(interval[0], scale=100)}-{_fmt(interval[1], scale=100)}%)"
              if interval else "")
    return f"Mean DSC {_fmt(summary['dsc_mean'], scale=100)}%{spread}, over {n_bleeding} cases with hemorrhage."


def uncertainty_lines(summary: dict) -> list[str]:
    """The bootstrap interval of the mean Dice and the mean Dice by true volume, as Markdown lines."""
    if summary.get("dsc_mean") is None:
        return [dsc_interval_line(summary)]
    return [dsc_interval_line(summary), "", *markdown_table(BY_VOLUME_HEADER, by_volume_rows(summary))]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table's lines: the header, its rule, one line per row of cells."""
    return ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|",
            *("| " + " | ".join(cells) + " |" for cells in rows)]


def write_summary_markdown(path: Path, rows: Sequence[GroupSummary], summary: dict, *, title: str) -> None:
    lines = [
        f"# {title}",
        "",
        *markdown_table(TABLE_HEADER, table_rows(rows)),
        "",
        "Overlap means are over cases whose truth holds hemorrhage; volume MAE over all cases of the group.",
        "ABC/2 is computed from the ground-truth mask (plain C and Kothari's weighted C); improvement is",
        "(ABC/2 MAE - model MAE) / ABC/2 MAE.",
        "",
        *uncertainty_lines(summary),
        "",
    ]
    path.write_text("\n".join(lines))


def _pyplot():
    """matplotlib, imported only when a plot is drawn: it costs every `ichvol` command a second otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bland_altman(path: Path, true: np.ndarray, estimate: np.ndarray, title: str) -> None:
    plt = _pyplot()
    mean, diff = (estimate + true) / 2.0, estimate - true
    bias, spread = float(diff.mean()), 1.96 * float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(mean, diff, s=18, alpha=0.8)
    ax.axhline(bias, color="C1", label=f"bias {bias:+.2f} ml")
    for limit in (bias - spread, bias + spread):
        ax.axhline(limit, color="C1", linestyle="--")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("mean of estimate and truth (ml)")
    ax.set_ylabel("estimate - truth (ml)")
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(folder: Path, results: Sequence[CaseResult]) -> list[Path]:
    plt = _pyplot()
    true = np.array([r.true_volume_ml for r in results])
    model = np.array([r.predicted_volume_ml for r in results])
    abc2 = np.array([r.abc2_truth_ml for r in results])
    kothari = np.array([r.abc2_truth_kothari_ml for r in results])
    paths = [folder / name for name in PLOT_FILES]
    _bland_altman(paths[0], true, model, "Model volume vs truth")
    _bland_altman(paths[1], true, abc2, "ABC/2 (from the true mask) vs truth")

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(true, model, s=18, label="model")
    ax.scatter(true, abc2, s=18, marker="x", label="ABC/2")
    ax.scatter(true, kothari, s=18, marker="+", label="ABC/2 Kothari")
    top = float(max(true.max(initial=0), model.max(initial=0), abc2.max(initial=0), 1.0)) * 1.05
    ax.plot([0, top], [0, top], color="grey", linewidth=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("true volume (ml)")
    ax.set_ylabel("estimated volume (ml)")
    ax.set_title("Estimated vs true hemorrhage volume")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    plt.close(fig)
    return paths


def write_report(
    folder: Path, results: Sequence[CaseResult], rows: Sequence[GroupSummary], summary: dict, *, title: str
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_summary_json(folder / "summary.json", summary)
    write_cases_csv(folder / "cases.csv", results)
    write_summary_markdown(folder / "summary.md", rows, summary, title=title)
    write_plots(folder, results)
