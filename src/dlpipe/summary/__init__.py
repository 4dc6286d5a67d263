"""Summary of the models of a workflow sweep: one table and the comparison plots.

Public API
----------
loss_name
    A loss dict as the name used in model names ({"ce": 1, "dice": 1} -> "ce+dice").
model_row
    One row of the table: a model's settings, parameters, per-phase Jaccard, time.
summarise
    Write ``models.csv``, ``jaccard_vs_parameters.png`` and ``learning_curve.png``.
"""

from dlpipe.summary.plots import jaccard_vs_parameters, learning_curve
from dlpipe.summary.table import loss_name, model_row, summarise

__all__ = ["jaccard_vs_parameters", "learning_curve", "loss_name", "model_row", "summarise"]
