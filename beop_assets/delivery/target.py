"""What every configuration the registry holds shares (an export entry, each transport's target): a strict,
frozen model. An unknown key is a fault named with its field (a typo such as `pasword_env` must not be
ignored silently), and nothing changes a validated configuration afterwards."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
