"""Evaluation of a segmentation model on a labelled test set: `ichvol evaluate --testset DIR --out DIR`.

Modules: `metrics` (overlap and volume on label maps), `testset` (the test-set layout and dataset.json),
`run` (predict and score each case), `summary` (grouping and means in the paper's layout),
`uncertainty` (bootstrap intervals over cases, Dice by true volume),
`report` (summary.json, cases.csv, summary.md, plots), `cli` (the Typer command).
"""

from .metrics import OverlapScores, label_volume_ml, overlap_scores, per_type_dsc
from .run import CaseResult, evaluate_testset, score_case
from .summary import GroupSummary, summarize
from .testset import TestCase, TestSet, load_testset

__all__ = [
    "CaseResult",
    "GroupSummary",
    "OverlapScores",
    "TestCase",
    "TestSet",
    "evaluate_testset",
    "label_volume_ml",
    "load_testset",
    "overlap_scores",
    "per_type_dsc",
    "score_case",
    "summarize",
]
