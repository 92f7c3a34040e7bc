"""Grid axes with a meaning of their own, one module each: a module of this package that defines one registers it.

An axis of an experiment that is not registered here is a section (its values set several keys
of it) or a dotted config key. ``AXES`` imports every module of the package the first time it
is read, so a new named axis is one new file here (see docs/architecture.md).
"""

from sempairs.experiments.axes.base import AXES, Axis

__all__ = ["AXES", "Axis"]
