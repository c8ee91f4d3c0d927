"""The delivery IO manager: delivers a built export file to its customer, and reads a delivered file back.

The export asset only builds a local file (`ExportFile`); the IO manager looks the export's destination
up, hands the file to the export's transport (SFTP or GCS: one `Transport` interface, delivery/transport.py),
records the attempt and its result in the delivery ledger, and surfaces the receipt as materialization
metadata. `load_input` downloads what was delivered, which is what the delivery checks verify. One class
serves both modes; each mode's asset has its own resource key (`sftp_delivery`, `gcs_delivery`).

When the customer's key may not read a delivered object back (a GCS key with only Storage Object
Creator), the delivery was proven by its upload receipt instead; the built file is then kept in the
run's spool until the checks have read it (they remove it), so that they can still read the bytes that
the receipt proves were stored, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext

from beop_assets.defs.partitions import split_export_day_key
from beop_assets.defs.resources import ExportRegistry, Warehouse
from beop_assets.delivery import gcs, ledger
from beop_assets.delivery.gcs import GcsOptions
from beop_assets.delivery.retry import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_S, RetryPolicy
from beop_assets.delivery.sftp import SftpOptions
from beop_assets.delivery.sftp_connection import SessionPool
from beop_assets.delivery.transport import Receipt, Transport, transport_for
from beop_assets.exports.export_file import ExportFile
from beop_assets.exports.registry import GlobalExport, SpecificExport
from beop_assets.settings import DEFAULT_RUN_NICE


@dataclass(frozen=True)
class DeliveredFile:
    """A delivered file, downloaded again from the customer's destination for verification.

    `read_back_denied` says why it could not be downloaded (the key may not read it); `local_path`
    is then the built file, proven equal to the stored object by the upload receipt in the ledger,
    or None when that copy is gone too."""

    delivery: ledger.Delivery
    local_path: Path | None
    read_back_denied: str | None = None
    folder: Path | None = None  # the spool folder holding the copies: removed once the checks are done


class DeliveryIOManager(ConfigurableIOManager):
    """Delivers each export file through its export's transport; reads delivered files back for the checks."""

    registry: ExportRegistry
    warehouse: Warehouse
    sftp_read_back: bool = False  # BEOP_SFTP_READ_BACK
    retry_attempts: int = DEFAULT_ATTEMPTS  # BEOP_DELIVERY_ATTEMPTS
    retry_backoff_s: float = DEFAULT_BACKOFF_S  # BEOP_DELIVERY_BACKOFF
    run_nice: int = (
        DEFAULT_RUN_NICE  # BEOP_RUN_NICE: a batched run in a process of its own yields the CPU (defs/exports/batch.py)
    )

    def transport(self, export: SpecificExport | GlobalExport, sessions: SessionPool | None = None) -> Transport:
        """The export's transport; `sessions` lets SFTP deliveries of one batched run share their logins."""
        retry = RetryPolicy(attempts=self.retry_attempts, backoff_s=self.retry_backoff_s)
        if isinstance(export, SpecificExport):
            options = SftpOptions(read_back=self.sftp_read_back, retry=retry, sessions=sessions)
            return transport_for(export.id, export.sftp, options)
        return transport_for(export.id, export.gcs, GcsOptions(retry=retry))

    def handle_output(self, context: OutputContext, obj: ExportFile) -> None:
        registry = self.registry.exports_for([obj.export_id])
        context.add_output_metadata(self.deliver(obj, registry.get(obj.export_id), registry.revision, context.run_id))

    def deliver(
        self,
        obj: ExportFile,
        export: SpecificExport | GlobalExport,
        registry_revision: str,
        run_id: str,
        sessions: SessionPool | None = None,
    ) -> dict[str, Any]:
        """Deliver one built file and record it in the ledger; its materialization metadata. The one
        delivery path of both a single-export output and each export of a batched run (export assets call
        it once per export)."""
        transport = self.transport(export, sessions)
        root = self.warehouse.ledger()
        # Earlier attempts of this export and day that did not end delivered may have left their
        # temporary files behind: named to the transport, removed once this delivery succeeded.
        leftovers = ledger.leftover_temps(export.id, obj.day, root=root)
        delivery_id = ledger.start(
            export.id,
            export.mode,
            obj.day,
            obj.file_name,
            obj.rows,
            obj.bytes,
            obj.sha256,
            transport.destination(),
            run_id,
            root=root,
            temp_name=transport.temp_name(obj.file_name),
            registry_revision=registry_revision,
        )
        try:
            receipt = transport.deliver(obj.path, obj.file_name, leftovers=leftovers)
        except Exception as exc:
            attempts = getattr(exc, "attempts", None)
            ledger.finish(delivery_id, error=f"{type(exc).__name__}: {exc}", attempts=attempts, root=root)
            obj.path.unlink(missing_ok=True)  # a retry rebuilds it from the model: no personal data kept
            raise
        ledger.finish(
            delivery_id,
            attempts=receipt.attempts,
            destination=receipt.destination,
            verification=_verification(receipt),
            root=root,
        )
        # A crash's leftovers this delivery removed from the customer's directory: kept on record.
        ledger.record_removed_temp_files(
            export.id, transport.destination(), receipt.leftovers_removed, run_id, root=root
        )
        if receipt.verified_from == gcs.UPLOAD_RECEIPT:
            kept = self._built_copy(obj.day, obj.export_id, run_id, delivery_id, obj.file_name)
            kept.parent.mkdir(parents=True, exist_ok=True)
            obj.path.replace(kept)  # what the checks read: it cannot be read back from the bucket
        else:
            obj.path.unlink(missing_ok=True)  # delivered: the spool keeps nothing it no longer needs
        return {
            **receipt.metadata(),
            "file_name": MetadataValue.text(obj.file_name),
            "rows": MetadataValue.int(obj.rows),
            "bytes": MetadataValue.int(obj.bytes),
            "sha256": MetadataValue.text(obj.sha256),
            "delivery_attempts": MetadataValue.int(receipt.attempts),
            "delivery_id": MetadataValue.int(delivery_id),
            "registry_revision": MetadataValue.text(registry_revision or ""),
        }

    def record_failure(self, export_id: str, mode: str, day: date, run_id: str, error: Exception) -> None:
        """An export that failed before its delivery started (it could not be built, or is misconfigured):
        recorded as a failed attempt all the same, so that the retry schedule sees every attempt."""
        root = self.warehouse.ledger()
        delivery_id = ledger.start(export_id, mode, day, "", 0, 0, "", "", run_id, root=root)
        ledger.finish(delivery_id, error=f"{type(error).__name__}: {error}", attempts=0, root=root)

    def _delivered_folder(self, day: date, export_id: str, run_id: str | None, delivery_id: int) -> Path:
        return self.warehouse.spool(day, export_id, run_id or "adhoc") / "delivered" / str(delivery_id)

    def _built_copy(self, day: date, export_id: str, run_id: str | None, delivery_id: int, file_name: str) -> Path:
        return self._delivered_folder(day, export_id, run_id, delivery_id) / "built" / file_name

    def load_input(self, context: InputContext) -> DeliveredFile:
        day, export_id = split_export_day_key(context.asset_partition_key)
        return self.read_back(day, export_id)

    def read_back(
        self,
        day: date,
        export_id: str,
        export: SpecificExport | GlobalExport | None = None,
        sessions: SessionPool | None = None,
    ) -> DeliveredFile:
        """The last delivered file of this export and day, downloaded again for its checks (from the
        target of `export` when the caller has it: a batch does, and reading the registry again for
        every export would cost in proportion to the whole registry)."""
        delivered = ledger.last_delivered(export_id, day, root=self.warehouse.ledger())
        if delivered is None:
            raise FileNotFoundError(f"no delivery of export {export_id!r} for {day} in the ledger")
        file_name = delivered.file_name or ""  # a delivered row always has one
        folder = self._delivered_folder(day, export_id, delivered.run_id, delivered.id)
        local = folder / file_name
        if not (local.exists() and local.stat().st_size == delivered.bytes):
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                target = export or self.registry.exports_for([export_id]).get(export_id)
                self.transport(target, sessions).download(file_name, local)
            except gcs.ReadBackDenied as denied:
                kept = self._built_copy(day, export_id, delivered.run_id, delivered.id, file_name)
                return DeliveredFile(
                    delivery=delivered,
                    local_path=kept if kept.exists() else None,
                    read_back_denied=str(denied),
                    folder=folder,
                )
        return DeliveredFile(delivery=delivered, local_path=local, folder=folder)


def _verification(receipt: Receipt) -> ledger.Verification:
    return ledger.Verification(
        verified_from=receipt.verified_from,
        built_crc32c=receipt.built_crc32c,
        built_md5=receipt.built_md5,
        stored_bytes=receipt.stored_bytes,
        stored_crc32c=receipt.stored_crc32c,
        stored_md5=receipt.stored_md5,
        generation=receipt.generation,
    )
