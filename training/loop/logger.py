"""The same scalars to TensorBoard and to log.csv, one row per epoch."""

from __future__ import annotations

import csv
import math
from pathlib import Path

LOG_FIELDS = ["epoch", "step", "lr", "train_loss", "val_loss", "val_macro_auc", "val_within_source_auc",
              "val_accuracy", "images_per_s", "seconds"]


class Logger:
    """Rows past a resumed epoch are dropped first, so a resumed run's log reads as one uninterrupted run."""

    def __init__(self, out: Path, resume_epoch: int):
        from torch.utils.tensorboard import SummaryWriter

        self.path = out / "log.csv"
        rows = []
        if resume_epoch and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= resume_epoch]
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, LOG_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self.tb = SummaryWriter(str(out / "tb"), purge_step=None)

    def log(self, row: dict):
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, LOG_FIELDS, extrasaction="ignore").writerow(row)
        for key, value in row.items():
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            if key not in ("epoch", "step") and not missing:
                self.tb.add_scalar(key, value, row["step"])
        self.tb.flush()

    def close(self):
        self.tb.close()
