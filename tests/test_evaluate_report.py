"""Grouping, means and the files written by the evaluation, from hand-made case results."""

import csv
import json

import matplotlib.image as mpimg
import numpy as np
import pytest

from ichvol.models.evaluation import CaseResult, summarize
from ichvol.models.evaluation.report import PLOT_FILES, write_report
from ichvol.models.evaluation.summary import ALL_CASES, summary_dict

REQUIRED_KEYS = {
    "dsc_mean",
    "iou_mean",
    "precision_mean",
    "recall_mean",
    "volume_mae_ml_model",
    "volume_mae_ml_abc2",
    "volume_mae_ml_abc2_kothari",
    "seconds_per_case",
    "n_cases",
}


def _case(name, type_, group, dsc, true, predicted, abc2, kothari, seconds=1.0, per_type=None):
    return CaseResult(
        name=name,
        type=type_,
        group=group,
        dsc=dsc,
        iou=dsc / (2 - dsc),
        precision=dsc,
        recall=dsc,
        true_volume_ml=true,
        predicted_volume_ml=predicted,
        abc2_truth_ml=abc2,
        abc2_truth_kothari_ml=kothari,
        abc2_predicted_ml=abc2,
        abc2_predicted_kothari_ml=kothari,
        seconds=seconds,
        dsc_per_type=per_type or {},
    )


@pytest.fixture
def results():
    return [
        _case("c1", "IPH", "IPH+IVH+mixed", 0.9, 10.0, 11.0, 16.0, 12.0, 2.0, {"IPH": 0.9}),
        _case("c2", "IPH+IVH", "IPH+IVH+mixed", 0.8, 20.0, 18.0, 30.0, 24.0, 4.0, {"IPH": 0.85, "IVH": 0.7}),
        _case("c3", "SAH", "SAH", 0.6, 5.0, 7.0, 9.0, 6.0, 3.0, {"SAH": 0.6}),
        _case("c4", "none", "no hemorrhage", 0.0, 0.0, 0.5, 0.0, 0.0, 1.0, {"IPH": 0.0}),
    ]


def test_groups_and_means(results):
    rows = summarize(results)
    assert [r.group for r in rows] == ["IPH+IVH+mixed", "SAH", "no hemorrhage", ALL_CASES]
    iph = rows[0]
    assert iph.n_cases == 2
    assert iph.dsc_mean == pytest.approx(0.85)
    assert iph.volume_mae_ml_model == pytest.approx(1.5)
    assert iph.volume_mae_ml_abc2 == pytest.approx(8.0)
    assert iph.volume_mae_ml_abc2_kothari == pytest.approx(3.0)
    assert iph.volume_mae_ml_abc2_of_prediction == pytest.approx(8.0)  # the same ABC/2 figures in this data
    assert iph.volume_bias_ml_model == pytest.approx(-0.5)
    assert iph.mae_improvement_pct_vs_abc2 == pytest.approx((8.0 - 1.5) / 8.0 * 100)
    assert iph.seconds_per_case == pytest.approx(3.0)
    none = rows[2]
    assert none.dsc_mean is None  # overlap is averaged over cases with hemorrhage only
    assert none.volume_mae_ml_model == pytest.approx(0.5)
    assert none.mae_improvement_pct_vs_abc2 is None  # ABC/2 of nothing is exact
    overall = rows[-1]
    assert overall.n_cases == 4 and overall.n_cases_with_hemorrhage == 3
    assert overall.dsc_mean == pytest.approx((0.9 + 0.8 + 0.6) / 3)
    assert overall.volume_mae_ml_model == pytest.approx((1 + 2 + 2 + 0.5) / 4)


def test_summary_dict_keys(results):
    summary = summary_dict(results, binary=False, extra={"testset": "t"})
    assert REQUIRED_KEYS <= set(summary)
    assert summary["n_cases"] == 4
    assert summary["labels"] == "multiclass"
    assert summary["testset"] == "t"
    assert summary["false_positive_ml_mean_hemorrhage_free"] == pytest.approx(0.5)
    assert summary["dsc_per_type_mean"]["IPH"] == pytest.approx((0.9 + 0.85 + 0.0) / 3)
    # The same per type, over the cases whose truth holds it: the hemorrhage-free c4 no longer counts.
    assert summary["dsc_per_type_mean_cases_with_type"] == pytest.approx({"IPH": 0.875, "IVH": 0.7, "SAH": 0.6})
    assert [g["group"] for g in summary["groups"]][-1] == ALL_CASES
    assert summary["type_agreement_mean"] is None  # the hand-made cases carry none


def test_written_files(tmp_path, results):
    rows = summarize(results)
    write_report(tmp_path / "out", results, rows, summary_dict(results, binary=False), title="unit")
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert REQUIRED_KEYS <= set(summary)
    with (out / "cases.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [row["name"] for row in table] == ["c1", "c2", "c3", "c4"]
    assert float(table[1]["predicted_volume_ml"]) == pytest.approx(18.0)
    assert table[1]["dsc_IVH"] == "0.7000" and table[0]["dsc_IVH"] == ""
    markdown = (out / "summary.md").read_text()
    assert "| IPH+IVH+mixed | 2 | 85.00 |" in markdown
    assert "| all cases | 4 |" in markdown
    assert "Mean DSC 76.67% (95% bootstrap interval over cases" in markdown
    assert "| 10-30 ml | 2 | 85.00 | 85.00 |" in markdown
    for name in PLOT_FILES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = mpimg.imread(out / name)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 0  # something was drawn


def test_single_case_plots(tmp_path):
    one = [_case("c1", "IPH", "IPH+IVH+mixed", 0.9, 10.0, 11.0, 16.0, 12.0)]
    write_report(tmp_path, one, summarize(one), summary_dict(one, binary=True), title="one")
    assert all((tmp_path / name).is_file() for name in PLOT_FILES)


def test_intervals_and_volume_bins(results):
    summary = summary_dict(results, binary=False)
    low, high = summary["dsc_mean_ci95"]
    # Over the three cases with hemorrhage (0.9, 0.8, 0.6): the interval holds the mean and stays within the
    # smallest and largest case.
    assert 0.6 <= low < summary["dsc_mean"] < high <= 0.9
    assert summary["dsc_mean_ci95"] == summary_dict(results, binary=False)["dsc_mean_ci95"]  # seeded
    low, high = summary["volume_mae_ml_model_ci95"]
    assert 0.5 <= low <= summary["volume_mae_ml_model"] <= high <= 2.0  # |errors| 1, 2, 2, 0.5
    bins = {b["range_ml"]: b for b in summary["dsc_by_true_volume"]}
    assert list(bins) == ["< 2 ml", "2-10 ml", "10-30 ml", ">= 30 ml"]
    assert bins["2-10 ml"]["n_cases"] == 1 and bins["2-10 ml"]["dsc_mean"] == pytest.approx(0.6)
    assert bins["10-30 ml"]["n_cases"] == 2 and bins["10-30 ml"]["dsc_mean"] == pytest.approx(0.85)
    assert bins["< 2 ml"]["n_cases"] == 0 and bins["< 2 ml"]["dsc_mean"] is None  # c4 holds no hemorrhage
    assert sum(b["n_cases"] for b in bins.values()) == 3


def test_one_case_has_no_interval():
    one = [_case("c1", "IPH", "IPH+IVH+mixed", 0.9, 10.0, 11.0, 16.0, 12.0)]
    summary = summary_dict(one, binary=True)
    assert summary["dsc_mean_ci95"] is None and summary["volume_mae_ml_model_ci95"] is None


def test_the_interval_narrows_with_more_cases():
    rng = np.random.default_rng(1)

    def width(n):
        cases = [_case(f"c{i}", "IPH", "IPH+IVH+mixed", float(d), 10.0, 10.0, 10.0, 10.0)
                 for i, d in enumerate(rng.uniform(0.5, 1.0, n))]
        low, high = summary_dict(cases, binary=False)["dsc_mean_ci95"]
        return high - low

    assert width(400) < width(25) / 2
