"""sempairs: self-supervised representation learning with semantic positive pairs."""

__version__ = "0.1.0"
