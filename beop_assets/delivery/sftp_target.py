"""Where a specific export is delivered over SFTP: the SFTP transport's own target type, validated when
the registry is loaded (a transport owns its target and options, as rclone's and dlt's backends do)."""

from __future__ import annotations

from pydantic import Field, model_validator

from beop_assets.delivery.secrets import credential_field
from beop_assets.delivery.target import StrictModel


class SftpTarget(StrictModel):
    """Where a specific export is delivered, and how to authenticate (by reference only)."""

    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(min_length=1)
    directory: str = Field(min_length=1)
    # Credentials by reference only; declared as such, so that what they point at is masked everywhere.
    password_env: str | None = credential_field("env")
    private_key_file: str | None = credential_field("file")
    private_key_env: str | None = credential_field("env")
    private_key_passphrase_env: str | None = credential_field("env")
    known_hosts_file: str | None = None
    insecure_skip_host_key_check: bool = False

    @model_validator(mode="after")
    def _one_credential_and_host_key_policy(self) -> SftpTarget:
        given = [k for k in ("password_env", "private_key_file", "private_key_env") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "exactly one of password_env, private_key_file, private_key_env is required"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.known_hosts_file and self.insecure_skip_host_key_check:
            raise ValueError("known_hosts_file and insecure_skip_host_key_check: true exclude each other")
        if not self.known_hosts_file and not self.insecure_skip_host_key_check:
            raise ValueError(
                "known_hosts_file is required (or the explicit opt-out insecure_skip_host_key_check: true)"
            )
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
