"""Where a global export is delivered on GCS: the GCS transport's own target type, validated when the
registry is loaded."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from beop_assets.delivery.secrets import credential_field
from beop_assets.delivery.target import StrictModel


class GcsTarget(StrictModel):
    """Where a global export is delivered, with the customer's service-account key (by reference)."""

    bucket: str = Field(min_length=3, max_length=222, pattern=r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
    prefix: str = ""
    credentials_file: str | None = credential_field("file")
    credentials_env: str | None = credential_field("env")

    @model_validator(mode="after")
    def _one_credentials_source(self) -> GcsTarget:
        if bool(self.credentials_file) == bool(self.credentials_env):
            raise ValueError("exactly one of credentials_file, credentials_env is required")
        return self

    @field_validator("prefix")
    @classmethod
    def _relative_prefix(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("prefix must be relative and must not contain '..'")
        return value
