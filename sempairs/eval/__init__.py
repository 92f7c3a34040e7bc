"""Evaluation of representations: feature extraction and kNN."""

from sempairs.eval.features import extract_features
from sempairs.eval.knn import knn_accuracy, knn_scores

__all__ = ["extract_features", "knn_accuracy", "knn_scores"]
