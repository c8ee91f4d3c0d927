"""Telling someone: a failed run or a missed day, sent to a Slack-compatible webhook and/or by e-mail.

Plain Python, no Dagster: the run-failure sensor and the missed-day check build an `Alert` and call
`send_alert`. A message names the export, the data day, the error and the run, and never a secret:
the texts come from the product's own errors (which never carry credentials), and every secret the
configuration points at (SFTP passwords and keys, service-account keys, the SMTP password) is also
masked in the text before it leaves, in case a library put one into an error. The webhook URL itself
is a secret (Slack's carry a token): it is never written into an error; only its host is.
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from urllib.parse import urlsplit

from beop_assets.delivery.secrets import mask, secret_values
from beop_assets.operations.alert_settings import AlertSettings  # where alerts go (also importable from here)
from beop_assets.operations.missed_deliveries import MissedDayReport, MissedDelivery

MASK = "[redacted]"
MAX_ERROR_CHARS = 1500  # a whole traceback helps nobody in a chat message; the run has it


class AlertDeliveryError(RuntimeError):
    """An alert could not be sent on some channel; the message names the channel and the host."""


@dataclass(frozen=True)
class Alert:
    subject: str
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join([self.subject, *self.lines])


def redact(text: str, secrets: Iterable[str]) -> str:
    """Alerts leave the platform (a chat webhook, e-mail): masked by the product's one masking rule."""
    return mask(text, secrets, marker=MASK)


def registry_secrets(exports: Iterable[object]) -> list[str]:
    """The values of every secret the registry's exports point at: their targets' declared credential fields."""
    return secret_values(*exports)


def _short(error: str | None) -> str:
    error = (error or "no error message").strip()
    return error if len(error) <= MAX_ERROR_CHARS else error[:MAX_ERROR_CHARS] + " [...]"


def run_failure_alert(
    job: str, run_id: str, error: str | None, export_id: str | None = None, day: str | None = None
) -> Alert:
    what = f"export {export_id}" if export_id else f"job {job}"
    lines = [
        f"export: {export_id or '(none: not an export run)'}",
        f"data day: {day or '(none)'}",
        f"job: {job}",
        f"run: {run_id}",
        f"error: {_short(error)}",
    ]
    return Alert(subject=f"beop-exports: {what} failed" + (f" for {day}" if day else ""), lines=lines)


def missed_day_alert(report: MissedDayReport, deadline: str) -> Alert:
    count = len(report.missed)
    lines = [f"data day: {report.day}", f"deadline: {deadline}"]
    lines += [f"- {m.describe()}" for m in report.missed]
    lines += [f"- {fault}" for fault in report.faults]
    subject = f"beop-exports: {count} export(s) missed the delivery of {report.day}" + (
        " (registry unreadable)" if report.faults else ""
    )
    return Alert(subject=subject, lines=[_short(line) if line.startswith("- ") else line for line in lines])


def given_up_alert(day: date, missed: list[MissedDelivery], retried_until: str) -> Alert:
    """The last word on a day about to leave the look-back window undelivered: after `retried_until`
    no sensor asks for it again, so only an operator can still deliver it."""
    lines = [
        f"data day: {day}",
        f"automatic retries stop: {retried_until} (BEOP_DELIVERY_LOOKBACK_DAYS); "
        "this day will no longer be retried after that",
    ]
    for m in missed:
        lines += [
            f"- export {m.export_id} ({m.mode or 'unknown mode'}): last error: {_short(m.last_error or m.describe())}",
            f"  to deliver it by hand: beop-exports run --date {day} --export {m.export_id}",
        ]
    subject = f"beop-exports: {len(missed)} export(s) never delivered {day}; this day will no longer be retried"
    return Alert(subject=subject, lines=lines)


def _webhook_host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def post_webhook(url: str, text: str, timeout_s: float) -> None:
    """POST `{"text": ...}` as Slack's incoming webhooks (and Mattermost, Teams' Slack mode) expect."""
    request = urllib.request.Request(
        url,
        data=json.dumps({"text": text}).encode("utf-8"),
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "beop-exports"},
        method="POST",
    )
    host = _webhook_host(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            if not 200 <= response.status < 300:
                raise AlertDeliveryError(f"alert webhook at {host} answered HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise AlertDeliveryError(
            f"alert webhook at {host} answered HTTP {exc.code}: check BEOP_ALERT_WEBHOOK_URL"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AlertDeliveryError(
            f"alert webhook at {host} unreachable ({reason}): check BEOP_ALERT_WEBHOOK_URL"
        ) from None


def send_email(config: AlertSettings, subject: str, text: str) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = config.smtp_from or "beop-exports@localhost"
    message["To"] = ", ".join(config.smtp_to)
    message.set_content(text)
    where = f"{config.smtp_host}:{config.smtp_port}"
    try:
        with smtplib.SMTP(config.smtp_host or "", config.smtp_port, timeout=config.timeout_s) as smtp:
            if config.smtp_starttls:
                smtp.starttls()
            if config.smtp_user:
                smtp.login(config.smtp_user, config.smtp_password or "")
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError:
        raise AlertDeliveryError(
            f"SMTP server {where} refused the login of {config.smtp_user!r}: check BEOP_ALERT_SMTP_USER/PASSWORD"
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise AlertDeliveryError(
            f"alert e-mail via SMTP server {where} failed ({type(exc).__name__}: {exc}): "
            "check BEOP_ALERT_SMTP_HOST/PORT"
        ) from None


def send_alert(alert: Alert, config: AlertSettings, secrets: Iterable[str] = ()) -> list[str]:
    """Send on every configured channel; returns the channels used. One channel failing does not stop
    the other; if any failed, raises `AlertDeliveryError` naming each failure (after trying all)."""
    hidden = [*secrets, config.smtp_password or "", config.webhook_url or ""]
    subject, text = redact(alert.subject, hidden), redact(alert.text(), hidden)
    sent, failures = [], []
    if config.webhook_url:
        try:
            post_webhook(config.webhook_url, text, config.timeout_s)
            sent.append(f"webhook {_webhook_host(config.webhook_url)}")
        except AlertDeliveryError as exc:
            failures.append(str(exc))
    if config.email_enabled:
        try:
            send_email(config, subject, text)
            sent.append(f"e-mail to {', '.join(config.smtp_to)}")
        except AlertDeliveryError as exc:
            failures.append(str(exc))
    if failures:
        raise AlertDeliveryError("; ".join(failures) + (f" (sent: {', '.join(sent)})" if sent else ""))
    return sent
