"""How every google-cloud-storage `Client` of the product is built: Google's, or the emulator's.

docs/operators-guide.md: when STORAGE_EMULATOR_HOST is set (demo, tests), every client (landing zone and
delivery) talks to that emulator, anonymously and with an explicit endpoint. This is the one place
that reads that variable, so the landing zone and the GCS transport cannot disagree about it. It
knows nothing else of the product: the landing zone and the transport both build on it. What a
`gs://bucket/prefix` URL means is decided here too (`GsUrl`).

google-cloud-storage is imported when a client is built, not with this module: the settings read gs://
URLs through `GsUrl`, and a command that builds no client (`validate` of a local registry) does not pay
the library's import (~0.2 s).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.cloud import storage
    from google.oauth2 import service_account

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
EMULATOR_PROJECT = "beop-emulator"


def emulator_host() -> str | None:
    """The emulator endpoint (with a scheme) when STORAGE_EMULATOR_HOST is set, else None."""
    value = os.environ.get(EMULATOR_ENV, "").strip()
    if not value:
        return None
    if "://" not in value:  # other tools accept "localhost:4443": so do we
        value = f"http://{value}"
    return value.rstrip("/")


def emulator_client(project: str | None = None) -> storage.Client:
    """An anonymous client bound explicitly to the emulator (fails if none is configured)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    host = emulator_host()
    if host is None:
        raise RuntimeError(f"{EMULATOR_ENV} is not set: there is no emulator to talk to")
    return storage.Client(
        project=project or EMULATOR_PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": host},
    )


def keyed_client(project: str, credentials: service_account.Credentials) -> storage.Client:
    """A client with a service account's credentials, or the emulator's anonymous one when configured
    (the key has then still been read and checked by the caller)."""
    from google.cloud import storage

    if emulator_host() is not None:
        return emulator_client(project=project)
    return storage.Client(project=project, credentials=credentials)


def platform_client() -> storage.Client:
    """A client with the platform's own identity (application default credentials in production,
    never a customer's key), for the `gs://` landing zone and the `gs://` warehouse; the emulator's
    when one is configured."""
    from google.cloud import storage

    if emulator_host() is not None:
        return emulator_client()
    return storage.Client()


@dataclass(frozen=True)
class GsUrl:
    """A `gs://bucket/prefix` location (landing zone, warehouse store): the one place that reads such a URL."""

    bucket: str
    prefix: str  # without a leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str, setting: str = "URL") -> GsUrl:
        if not is_gs(url):
            raise ValueError(f"{setting}={url!r}: expected gs://bucket/prefix")
        bucket, _, prefix = url.removeprefix("gs://").partition("/")
        if not bucket:
            raise ValueError(f"{setting}={url!r} names no bucket: write gs://bucket/prefix")
        return cls(bucket, prefix.strip("/"))

    def object_name(self, relative: str) -> str:
        """The object at `relative` under this prefix."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def relative(self, name: str) -> str:
        """An object's name below this prefix."""
        return name[len(self.prefix) + 1 :] if self.prefix else name

    def url(self, relative: str = "") -> str:
        return f"gs://{self.bucket}/{self.object_name(relative)}"


def is_gs(location: str) -> bool:
    return location.startswith("gs://")
