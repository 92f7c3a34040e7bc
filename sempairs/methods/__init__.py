"""Self-supervised methods, one module each; importing this package registers them all."""

from sempairs.methods import (  # noqa: F401  (importing a module registers its method)
    barlow,
    byol,
    dino,
    moco,
    nnclr,
    simclr,
    simsiam,
    vicreg,
)
from sempairs.methods.base import METHODS, Method, StepOutput

__all__ = ["METHODS", "Method", "StepOutput"]
