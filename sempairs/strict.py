"""The base of every config model: unknown keys are errors, never ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A pydantic model that refuses keys it does not declare (a typo is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid")
