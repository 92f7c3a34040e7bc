"""Evaluations of a trained grid cell, one module each: a module of this package that defines one registers it.

An experiment lists them in ``evaluations``; each adds its metric columns (and settings) to the
cell's results row. ``EVALUATORS`` imports every module of the package the first time it is read,
so a new evaluation is one new file here (``@register_evaluator``, see docs/architecture.md).

All but ``knn`` load the backbone from the run's ``last.ckpt`` and use the run's data selection
(``data.classes``, ``data.limit_per_class``, ``data.test_limit_per_class``, ``data.test_split``,
including ``heldout``); ``unseen_classes`` takes the other classes with the same selection. The grid
evaluation ``transfer`` of older experiments is read as ``unseen_classes``, with a deprecation warning.
"""

from sempairs.experiments.evaluations.base import EVALUATORS, Evaluator, register_evaluator

__all__ = ["EVALUATORS", "Evaluator", "register_evaluator"]
