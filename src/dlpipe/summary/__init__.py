"""Summary of the models of a workflow sweep: one table and the comparison plots.

Public API
----------
loss_name
    A loss dict as the name used in model names ({"ce": 1, "dice": 1} -> "ce+dice").
model_row, baseline_row
    One row of the table: a model's settings, parameters, per-phase Jaccard, time; or a
    classical baseline's scores.
best, best_lines
    The row of the best mean Jaccard; the "best overall" and "best model" lines.
curve_groups
    The lines of the learning curve: models that differ only in their annotated slices.
summarise
    Write ``models.csv``, ``jaccard_vs_parameters.png`` and ``learning_curve.png``.
"""

from dlpipe.summary.plots import curve_groups, jaccard_vs_parameters, learning_curve
from dlpipe.summary.table import baseline_row, best, best_lines, loss_name, model_row, summarise

__all__ = [
    "baseline_row",
    "best",
    "best_lines",
    "curve_groups",
    "jaccard_vs_parameters",
    "learning_curve",
    "loss_name",
    "model_row",
    "summarise",
]
