"""Training of one cascade stage: DiceCE summed over the deep-supervision outputs, AdamW, cosine annealing
with warm restarts, per-epoch checkpoints, best-by-validation weights, exact resume, a metrics CSV."""

from __future__ import annotations

import csv
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import Dataset
from monai.losses import DiceCELoss
from monai.utils import set_determinism
from torch.utils.data import DataLoader, RandomSampler

from ichvol.errors import ModelError

from .cascade import stage_probabilities
from .config import ModelConfig
from .data import train_transforms
from .folder import read_weights, stage_network, write_weights
from .validation import CascadeValidator

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
METRIC_COLUMNS = ["stage", "epoch", "train_loss", "val_dice", "val_dice_foreground", "val_cascade_dsc",
                  "val_cascade_false_positive_ml", "learning_rate", "seconds"]


@dataclass
class EpochResult:
    stage: int
    epoch: int  # 1-based; 0 is the starting weights of a fine-tuning, scored before any step
    train_loss: float
    val_dice: float  # mean over hemorrhage types present in truth or prediction, over validation items
    val_dice_foreground: float  # any hemorrhage vs background
    learning_rate: float
    seconds: float
    val_cascade_dsc: float = math.nan  # the whole cascade (models/validation.py), on the epochs it runs
    val_cascade_false_positive_ml: float = math.nan

    def row(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def selection_dice(stage: int, val_dice: float, val_dice_foreground: float) -> float:
    """The stage's own validation score. Stage 1 only locates hemorrhage (its type is stage 2's job): its
    foreground Dice. Stage 2: the mean of foreground and per-type Dice, since the volume rests on the first
    and the types on the second."""
    return val_dice_foreground if stage == 1 else (val_dice_foreground + val_dice) / 2


def selection_score(stage: int, row: dict, by_cascade: bool) -> float | None:
    """The score a stage's kept weights are chosen by, from a metrics row: the cascade's DSC when the run
    validates the cascade (None on the epochs it does not), else the stage's own validation Dice (minus the
    training loss when there is no validation set)."""
    if by_cascade:
        value = float(row["val_cascade_dsc"])
        return None if math.isnan(value) else value
    dice = selection_dice(stage, float(row["val_dice"]), float(row["val_dice_foreground"]))
    return -float(row["train_loss"]) if math.isnan(dice) else dice


def checkpoint_path(out: Path, stage: int) -> Path:
    return out / "checkpoints" / f"stage{stage}_last.pt"


class StageTrainer:
    """Trains one stage's network on cached items; epoch k (1-based) is seeded with seed + k, so that a
    resumed run draws exactly the same crops and augmentations as an uninterrupted one."""

    def __init__(self, config: ModelConfig, stage: int, out: Path, device: torch.device,
                 cascade_validator: CascadeValidator | None = None):
        self.config, self.stage, self.out, self.device = config, stage, Path(out), device
        # With a validator the kept weights are chosen by the cascade's DSC every
        # `training.cascade_validation_every` epochs (and at the last); else by the stage's own validation.
        self.cascade_validator = cascade_validator
        self.stage_config = config.stage(stage)
        settings = config.training
        set_determinism(seed=settings.seed + 1000 * stage)
        self.network = stage_network(config, stage).to(device)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=settings.learning_rate,
                                           weight_decay=settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.optimizer, T_0=max(1, settings.restart_epochs * settings.iterations_per_epoch))
        # Batch Dice (nnU-Net): a crop usually holds one hemorrhage type; per-sample Dice would score the absent
        # types too and drown the gradient of the present one.
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
        self.amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch = 0
        self.best_dice = -math.inf
        self.fine_tuning = False

    def resume(self) -> bool:
        path = checkpoint_path(self.out, self.stage)
        if not path.is_file():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
            self.network.load_state_dict(state["network"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError) as exc:
            raise ModelError(f"{path}: checkpoint does not fit this configuration ({exc})") from exc
        self.epoch, self.best_dice = int(state["epoch"]), float(state["best_dice"])
        log.info("stage %d: resuming after epoch %d (best validation Dice %.4f)", self.stage, self.epoch,
                 self.best_dice)
        return True

    def start_from(self, folder: Path) -> None:
        """Fine-tuning: start from another model folder's weights of this stage (a fresh optimiser and
        schedule); the folder's architecture must be this config's."""
        self.network.load_state_dict(read_weights(folder, self.stage, self.network))
        self.fine_tuning = True
        log.info("stage %d: starting from the weights of %s", self.stage, folder)

    def fit(self, train_items: list[dict], val_items: list[dict], epochs: int,
            on_iteration: Callable[[int, int, float], None] | None = None,
            on_epoch: Callable[[EpochResult], None] | None = None) -> list[EpochResult]:
        settings = self.config.training
        transforms = train_transforms(self.stage_config, self.config)
        dataset = Dataset(train_items, transform=transforms)
        results = []
        if self.epoch == 0 and self.fine_tuning and self.cascade_validator is not None:
            # The starting weights compete too: a fine-tuning never keeps weights worse than those it began with.
            results.append(self._starting_point(val_items))
            if on_epoch:
                on_epoch(results[-1])
        while self.epoch < epochs:
            epoch = self.epoch + 1
            seed = settings.seed + 1000 * self.stage + epoch
            set_determinism(seed=seed)
            transforms.set_random_state(seed=seed)
            generator = torch.Generator().manual_seed(seed)
            sampler = RandomSampler(dataset, replacement=True, generator=generator,
                                    num_samples=settings.iterations_per_epoch * settings.batch_size)
            loader = DataLoader(dataset, batch_size=settings.batch_size, sampler=sampler, num_workers=0,
                                collate_fn=_collate)
            started = time.perf_counter()
            losses = []
            self.network.train()
            with warnings.catch_warnings():
                # Stage 2's hemorrhage-free ROIs (stage 1's false alarms) have no foreground to centre a crop on,
                # by design; MONAI warned of it for every such crop, burying the progress bar.
                warnings.filterwarnings("ignore", message="Num foregrounds 0", category=UserWarning)
                for iteration, batch in enumerate(loader, start=1):
                    losses.append(self._step(batch))
                    if on_iteration:
                        on_iteration(epoch, iteration, float(np.mean(losses)))
            cascade_epoch = self.cascade_validator is not None and (
                epoch % settings.cascade_validation_every == 0 or epoch == epochs)
            # When the cascade chooses, the stage's own validation (most of a CPU epoch) only informs: it runs
            # on the same epochs as the cascade's.
            own = self.cascade_validator is None or cascade_epoch
            dice, dice_fg = self.validate(val_items) if own else (math.nan, math.nan)
            result = EpochResult(self.stage, epoch, float(np.mean(losses)), dice, dice_fg,
                                 float(self.optimizer.param_groups[0]["lr"]), time.perf_counter() - started)
            if cascade_epoch:
                result = self._with_cascade_score(result, started)
            self.epoch = epoch
            self._save(result)
            results.append(result)
            if on_epoch:
                on_epoch(result)
        return results

    def _starting_point(self, val_items: list[dict]) -> EpochResult:
        started = time.perf_counter()
        dice, dice_fg = self.validate(val_items)
        result = EpochResult(self.stage, 0, math.nan, dice, dice_fg, float(self.optimizer.param_groups[0]["lr"]),
                             0.0)
        result = self._with_cascade_score(result, started)
        self._save(result)
        return result

    def _with_cascade_score(self, result: EpochResult, started: float) -> EpochResult:
        score = self.cascade_validator.score(self.network)
        log.info("stage %d epoch %d: cascade DSC %.4f, %.2f ml found in hemorrhage-free cases", self.stage,
                 result.epoch, score.dsc, score.false_positive_ml)
        result.val_cascade_dsc = score.dsc
        result.val_cascade_false_positive_ml = score.false_positive_ml
        result.seconds = time.perf_counter() - started
        return result

    def _step(self, batch: dict) -> float:
        image = batch["image"].to(self.device)
        label = batch["label"].to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=self.amp):
            outputs = self.network(image)
            # DynUNet stacks the full-size output and the upsampled deep-supervision heads on dim 1.
            heads = torch.unbind(outputs, dim=1) if outputs.dim() == 6 else (outputs,)
            loss = sum(self.loss(head.float(), label) for head in heads)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    def validate(self, items: list[dict]) -> tuple[float, float]:
        if not items:
            return float("nan"), float("nan")
        self.network.eval()
        class_scores, fg_scores = [], []
        for item in items:
            probs = stage_probabilities(self.network, item["image"].float(), self.stage_config, self.config.cascade)
            predicted = probs.argmax(0)
            truth = item["label"][0].long()
            class_scores.extend(_dice(predicted == c, truth == c) for c in range(1, self.config.num_classes)
                                if (truth == c).any() or (predicted == c).any())
            if (truth > 0).any() or (predicted > 0).any():
                fg_scores.append(_dice(predicted > 0, truth > 0))
        self.network.train()
        mean = lambda values: float(np.mean(values)) if values else 1.0  # noqa: E731 (nothing to find, none found)
        return mean(class_scores), mean(fg_scores)

    def _save(self, result: EpochResult) -> None:
        _append_metrics(self.out / METRICS_FILE, result)
        score = selection_score(self.stage, result.row(), self.cascade_validator is not None)
        if score is not None and score > self.best_dice:
            self.best_dice = score
            write_weights(self.out, self.stage, self.network.state_dict())
        path = checkpoint_path(self.out, self.stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "epoch": self.epoch, "best_dice": self.best_dice, "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        torch.save(state, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)  # a crash never leaves a half-written checkpoint


def _collate(samples: list) -> dict:
    # RandCropByPosNegLabeld returns a list of crops per item.
    flat = [crop for sample in samples for crop in (sample if isinstance(sample, list) else [sample])]
    return {
        "image": torch.stack([torch.as_tensor(s["image"]).as_tensor() if hasattr(s["image"], "as_tensor")
                              else torch.as_tensor(s["image"]) for s in flat]),
        "label": torch.stack([torch.as_tensor(s["label"]).as_tensor() if hasattr(s["label"], "as_tensor")
                              else torch.as_tensor(s["label"]) for s in flat]),
    }


def _dice(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    overlap = float((predicted & truth).sum())
    total = float(predicted.sum() + truth.sum())
    return 2.0 * overlap / total if total else 1.0


def _append_metrics(path: Path, result: EpochResult) -> None:
    if path.is_file() and _header(path) != METRIC_COLUMNS:
        _rewrite_metrics(path, read_metrics(path))  # a run started before the columns changed
    new = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(result.row())


def truncate_metrics(path: Path, stage: int, after_epoch: int) -> None:
    """Drop rows of `stage` beyond `after_epoch` (written after the checkpoint a resume starts from)."""
    if not path.is_file():
        return
    rows = read_metrics(path)
    _rewrite_metrics(path, [r for r in rows if not (int(r["stage"]) == stage and int(r["epoch"]) > after_epoch)])


def _header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle), [])


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics CSV as strings, every column present ("nan" where an older file lacks it)."""
    with path.open(newline="") as handle:
        return [{column: row.get(column) or "nan" for column in METRIC_COLUMNS} for row in csv.DictReader(handle)]


def _rewrite_metrics(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
