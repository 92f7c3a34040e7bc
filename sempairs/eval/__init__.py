"""Evaluation protocols of a representation (kNN, linear probe, few-label, transfer, shift, detection)."""

from sempairs.eval.knn import knn_accuracy, knn_scores

__all__ = ["knn_accuracy", "knn_scores"]
