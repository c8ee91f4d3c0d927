"""What every transport does, and the one receipt it hands back: the contract the delivery IO manager,
the pre-flight check and the delivery checks are written against, whatever carries the file.

A transport owns its target type and its options (as rclone's and dlt's backends do): SFTP
(`delivery.sftp.SftpTransport`) and GCS (`delivery.gcs.GcsTransport`). `transport_for` picks one from
the target's type. How each proves and places a file: docs/sftp-delivery.md, docs/gcs-delivery.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from beop_assets.delivery.gcs import GcsOptions
    from beop_assets.delivery.gcs_target import GcsTarget
    from beop_assets.delivery.sftp import SftpOptions
    from beop_assets.delivery.sftp_target import SftpTarget

Fact = str | int | float


@dataclass(frozen=True)
class Receipt:
    """What was delivered, where, and how it was proven; recorded in the ledger and shown in the UI.

    `destination` is the file's final URI (never a secret in it); `verified_from` how its content was
    proven ("read-back", "upload receipt", "sha256 check-file", "acks+size"). The stored object's
    size and checksums, and its generation, are set where the transport learns them (GCS). SFTP writes
    under `temp_name` first, and names in `leftovers_removed` the earlier attempts' temporary files it
    removed once this delivery had succeeded. `facts` are the transport's own, for the UI."""

    destination: str
    file_name: str
    bytes: int
    attempts: int
    duration_s: float
    verified_from: str
    stored_bytes: int | None = None
    stored_crc32c: str | None = None
    stored_md5: str | None = None
    built_crc32c: str | None = None
    built_md5: str | None = None
    generation: int | None = None
    temp_name: str | None = None
    leftovers_removed: tuple[str, ...] = ()
    facts: Mapping[str, Fact] = field(default_factory=dict)

    def metadata(self) -> dict[str, Fact | list[str]]:
        """The receipt as materialization metadata: plain values, transport facts included."""
        shown: dict[str, Fact | list[str]] = {
            "destination": self.destination,
            "verified_from": self.verified_from,
            "duration_s": round(self.duration_s, 3),
        }
        for key, value in (("crc32c", self.built_crc32c), ("md5", self.built_md5), ("generation", self.generation)):
            if value is not None:
                shown[key] = value
        if self.temp_name is not None:
            shown["temp_name"] = self.temp_name
            shown["removed_temp_files"] = list(self.leftovers_removed)
        shown.update(self.facts)
        return shown


class Transport(Protocol):
    """Puts built files at one export's destination, reads them back, and checks it beforehand.

    Every method raises `DeliveryError`s (permanent or transient, with `.step` and `.attempts`) whose
    messages name the export, the destination and what to fix."""

    export_id: str

    def destination(self) -> str:
        """The destination's URI (folder or bucket prefix), for the ledger before anything is sent."""
        ...

    def temp_name(self, file_name: str) -> str | None:
        """The temporary name a delivery of `file_name` writes first (None: the transport uses none),
        recorded in the ledger before the upload so that a crash's leftover can be named later."""
        ...

    def deliver(self, built_path: Path, file_name: str, *, leftovers: Iterable[str] = ()) -> Receipt:
        """Deliver `built_path` as `file_name`, proven, with the transport's retries; once it is
        delivered, remove the earlier attempts' temporary files named in `leftovers` (a missing one is
        no error)."""
        ...

    def download(self, file_name: str, local_path: Path) -> int:
        """Read a delivered file back into `local_path`; its size in bytes."""
        ...

    def check(self, echo: Callable[[str], None] | None = None) -> list[str]:
        """Pre-flight: what a delivery would do, in one attempt, one line per step (each also passed to
        `echo` as it is done), the last line summing up."""
        ...

    def list_files(self) -> list[str]:
        """The names at the destination, sorted."""
        ...


def transport_for(
    export_id: str, target: SftpTarget | GcsTarget, options: SftpOptions | GcsOptions | None = None
) -> Transport:
    """The transport that owns `target`'s type, with `options` (its own options type; None: defaults)."""
    from beop_assets.delivery.gcs import GcsOptions, GcsTransport
    from beop_assets.delivery.gcs_target import GcsTarget
    from beop_assets.delivery.sftp import SftpOptions, SftpTransport
    from beop_assets.delivery.sftp_target import SftpTarget

    if isinstance(target, SftpTarget):
        if options is not None and not isinstance(options, SftpOptions):
            raise TypeError(f"export {export_id!r}: an SFTP target takes SftpOptions, not {type(options).__name__}")
        return SftpTransport(export_id, target, options or SftpOptions())
    if isinstance(target, GcsTarget):
        if options is not None and not isinstance(options, GcsOptions):
            raise TypeError(f"export {export_id!r}: a GCS target takes GcsOptions, not {type(options).__name__}")
        return GcsTransport(export_id, target, options or GcsOptions())
    raise TypeError(f"export {export_id!r}: no transport for a {type(target).__name__}")
