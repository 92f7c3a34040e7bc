"""Self-supervised methods, one module each: a module of this package that defines a method registers it.

``METHODS`` imports every module of the package the first time it is read, so a new method is one
new file here (see docs/architecture.md).
"""

from sempairs.methods.base import METHODS, Method, MethodConfig, StepOutput

__all__ = ["METHODS", "Method", "MethodConfig", "StepOutput"]
