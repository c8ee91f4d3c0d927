"""The customer's service-account key for a global export: where it is read, what it must hold, and
the client built from it.

- A global export writes with its customer's key, read from the file or the environment variable
  named in the registry (the key itself is never in the registry).
- With the emulator configured (`cloud_storage`), customer keys are STILL read and checked: a broken
  key must fail the demo and the tests exactly as it would fail production.

Error messages name the export and where the key was looked for (file path or variable name),
never the key's content: exception texts from JSON or key parsing can quote the input, so they are
not passed on.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from google.cloud import storage
from google.oauth2 import service_account

from beop_assets import cloud_storage
from beop_assets.delivery.errors import PermanentDeliveryError
from beop_assets.delivery.gcs_target import GcsTarget

# Enough to create, overwrite, read, list and delete objects; nothing on the bucket itself.
WRITE_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
REQUIRED_KEY_FIELDS = ("client_email", "private_key", "token_uri", "project_id")


def key_source(target: GcsTarget) -> str:
    """Where the key is read from, as an operator would look for it (safe to print)."""
    if target.credentials_file:
        return f"credentials file {target.credentials_file}"
    return f"environment variable {target.credentials_env}"


def _key_text(export_id: str, target: GcsTarget) -> str:
    where = key_source(target)
    if target.credentials_file:

        def fail(reason: str) -> PermanentDeliveryError:
            return PermanentDeliveryError(f"{where} {reason} (export {export_id})")

        try:
            with open(os.path.expanduser(target.credentials_file), "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            raise fail("does not exist") from None
        except IsADirectoryError:
            raise fail("is a directory, not a key file") from None
        except PermissionError:
            raise fail("is not readable by this process") from None
        except OSError as exc:  # strerror only: never the content
            raise fail(f"cannot be read: {exc.strerror}") from None
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise fail("is not a valid service-account key: not UTF-8 text") from None
    text = os.environ.get(target.credentials_env or "")
    if text is None or not text.strip():
        raise PermanentDeliveryError(f"{where} is not set or empty (export {export_id})")
    return text


def read_service_account_key(export_id: str, target: GcsTarget) -> dict[str, Any]:
    """Read and check the export's service-account key; return it as a dict (see `_checked_key`)."""
    return _checked_key(export_id, target)[0]


def _checked_key(export_id: str, target: GcsTarget) -> tuple[dict[str, Any], service_account.Credentials]:
    """The export's service-account key as a dict, and its credentials, from one read of the key.

    Checks what a key downloaded from Google Cloud always has (a JSON object with type
    "service_account", client_email, private_key, token_uri, project_id) and that google-auth can
    build credentials from it, which parses the RSA private key. Raises PermanentDeliveryError:
    a retry cannot fix a key.
    """
    where = key_source(target)

    def bad(reason: str) -> PermanentDeliveryError:
        return PermanentDeliveryError(f"{where} is not a valid service-account key: {reason} (export {export_id})")

    text = _key_text(export_id, target)
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:  # position only: the message could quote the input
        raise bad(f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(info, dict):
        raise bad("not a JSON object")
    if info.get("type") != "service_account":
        kind = info.get("type")
        shown = isinstance(kind, str) and len(kind) < 40
        raise bad(f'"type" is {kind!r}, expected "service_account"' if shown else 'no "type": "service_account"')
    missing = [f for f in REQUIRED_KEY_FIELDS if not (isinstance(info.get(f), str) and info[f].strip())]
    if missing:
        raise bad("missing or empty " + ", ".join(missing))
    if "-----BEGIN" not in info["private_key"]:
        raise bad("private_key is not a PEM private key")
    try:
        credentials = _credentials(text)
    except Exception:  # noqa: BLE001 - any failure means the same thing; its text may quote the key
        raise bad("private_key cannot be loaded (corrupt, truncated or not an RSA key)") from None
    return info, credentials


@functools.lru_cache(maxsize=256)
def _credentials(text: str) -> service_account.Credentials:
    """The credentials of a key's text, built once per process: loading the RSA key is the costliest
    step of a small delivery, and every delivery needs them twice (the upload and its read-back)."""
    return service_account.Credentials.from_service_account_info(json.loads(text), scopes=WRITE_SCOPES)


def client_for_export(export_id: str, target: GcsTarget) -> storage.Client:
    """A client that writes to the export's bucket with the customer's key (or to the emulator,
    anonymously, once the key has been read and checked)."""
    return key_and_client(export_id, target)[1]


def key_and_client(export_id: str, target: GcsTarget) -> tuple[dict[str, Any], storage.Client]:
    """The checked key (for what the pre-flight says of it) and its client, from one read of the key."""
    info, credentials = _checked_key(export_id, target)
    return info, cloud_storage.keyed_client(info["project_id"], credentials)
