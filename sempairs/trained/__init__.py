"""Trained models: their checkpoint files, rebuilding a method or a backbone from one, and the features it gives.

Below both the pair miner (``sempairs.pairs``) and the evaluation protocols (``sempairs.eval``),
above the methods and the run config they are rebuilt from.
"""
