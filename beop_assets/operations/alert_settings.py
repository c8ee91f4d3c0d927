"""Where alerts go (`operations/alerts.py` sends them), in a module of its own: the settings build it for
every command (`validate` included), and importing the senders would also import the ledger and its
database driver (~0.2 s) for nothing."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go: a Slack-compatible webhook and/or e-mail over SMTP (none: alerts are only logged)."""

    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str | None = None
    smtp_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    timeout_s: float = 10.0

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.smtp_to)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url) or self.email_enabled
