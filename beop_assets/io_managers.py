"""IO managers that deliver a built export file to its customer, and read a delivered file back.

The export asset only builds a local file (`ExportFile`); the IO manager looks the export's
destination up from the partition key, uploads (with the transport's retries), records the attempt
and its result in the delivery ledger, and surfaces the receipt as materialization metadata.
`load_input` downloads what was delivered, which is what the delivery checks verify.

When the customer's key may not read a delivered object back (a GCS key with only Storage Object
Creator), the delivery was proven by its upload receipt instead; the built file is then kept in the
run's spool (removed with it after a day), so that the content checks can still read the bytes that
the receipt proves were stored, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext

from beop_assets import settings
from beop_assets.delivery import gcs, ledger
from beop_assets.delivery.gcs import GcsOptions
from beop_assets.delivery.sftp import SftpOptions
from beop_assets.delivery.transport import Receipt, Transport, transport_for
from beop_assets.exports.export_file import ExportFile
from beop_assets.exports.registry import GlobalExport, SpecificExport
from beop_assets.partitions import split_export_day_key
from beop_assets.resources import ExportRegistry, Warehouse


@dataclass(frozen=True)
class DeliveredFile:
    """A delivered file, downloaded again from the customer's destination for verification.

    `read_back_denied` says why it could not be downloaded (the key may not read it); `local_path`
    is then the built file, proven equal to the stored object by the upload receipt in the ledger,
    or None when that copy is gone too."""

    delivery: ledger.Delivery
    local_path: Path | None
    read_back_denied: str | None = None


class _DeliveryIOManager(ConfigurableIOManager):
    registry: ExportRegistry
    warehouse: Warehouse

    mode: ClassVar[str] = ""

    def _transport(self, export) -> Transport:
        raise NotImplementedError

    def handle_output(self, context: OutputContext, obj: ExportFile) -> None:
        export = self.registry.load().get(obj.export_id)
        transport = self._transport(export)
        root = self.warehouse.path()
        # Earlier attempts of this export and day that did not end delivered may have left their
        # temporary files behind: named to the transport, removed once this delivery succeeded.
        leftovers = ledger.leftover_temps(export.id, obj.day, root=root)
        delivery_id = ledger.start(
            export.id,
            self.mode,
            obj.day,
            obj.file_name,
            obj.rows,
            obj.bytes,
            obj.sha256,
            transport.destination(),
            context.run_id,
            root=root,
            temp_name=transport.temp_name(obj.file_name),
        )
        try:
            receipt = transport.deliver(obj.path, obj.file_name, leftovers=leftovers)
        except Exception as exc:
            attempts = getattr(exc, "attempts", None)
            ledger.finish(delivery_id, error=f"{type(exc).__name__}: {exc}", attempts=attempts, root=root)
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
            export.id, transport.destination(), receipt.leftovers_removed, context.run_id, root=root
        )
        if receipt.verified_from == gcs.UPLOAD_RECEIPT:
            kept = self._built_copy(obj.export_id, context.run_id, delivery_id, obj.file_name)
            kept.parent.mkdir(parents=True, exist_ok=True)
            obj.path.replace(kept)  # what the checks read: it cannot be read back from the bucket
        else:
            obj.path.unlink(missing_ok=True)  # delivered: the spool keeps nothing it no longer needs
        context.add_output_metadata(
            {
                **receipt.metadata(),
                "file_name": MetadataValue.text(obj.file_name),
                "rows": MetadataValue.int(obj.rows),
                "bytes": MetadataValue.int(obj.bytes),
                "sha256": MetadataValue.text(obj.sha256),
                "delivery_attempts": MetadataValue.int(receipt.attempts),
                "delivery_id": MetadataValue.int(delivery_id),
            }
        )

    def _delivered_folder(self, export_id: str, run_id: str | None, delivery_id: int) -> Path:
        return self.warehouse.spool(export_id, run_id or "adhoc") / "delivered" / str(delivery_id)

    def _built_copy(self, export_id: str, run_id: str | None, delivery_id: int, file_name: str) -> Path:
        return self._delivered_folder(export_id, run_id, delivery_id) / "built" / file_name

    def _last_delivered(self, context: InputContext) -> ledger.Delivery:
        day, export_id = split_export_day_key(context.asset_partition_key)
        delivered = ledger.last_delivered(export_id, day, root=self.warehouse.path())
        if delivered is None:
            raise FileNotFoundError(f"no delivery of export {export_id!r} for {day} in the ledger")
        return delivered

    def load_input(self, context: InputContext) -> DeliveredFile:
        delivered = self._last_delivered(context)
        file_name = delivered.file_name or ""  # a delivered row always has one
        # One download per run and delivery, shared by every check of that run.
        local = self._delivered_folder(delivered.export_id, delivered.run_id, delivered.id) / file_name
        if not (local.exists() and local.stat().st_size == delivered.bytes):
            local.parent.mkdir(parents=True, exist_ok=True)
            self._transport(self.registry.load().get(delivered.export_id)).download(file_name, local)
        return DeliveredFile(delivery=delivered, local_path=local)


class SftpDeliveryIOManager(_DeliveryIOManager):
    """Delivers CSV files of specific exports to the customer's SFTP directory."""

    mode: ClassVar[str] = "specific"

    def _transport(self, export: SpecificExport) -> Transport:
        current = settings.current()
        return transport_for(
            export.id, export.sftp, SftpOptions(read_back=current.sftp_read_back, retry=current.delivery_retry)
        )


class GcsDeliveryIOManager(_DeliveryIOManager):
    """Delivers gzip ndJSON files of global exports to the customer's bucket."""

    mode: ClassVar[str] = "global"

    def _transport(self, export: GlobalExport) -> Transport:
        return transport_for(export.id, export.gcs, GcsOptions(retry=settings.current().delivery_retry))

    def load_input(self, context: InputContext) -> DeliveredFile:
        try:
            return super().load_input(context)
        except gcs.ReadBackDenied as denied:
            delivered = self._last_delivered(context)
            kept = self._built_copy(delivered.export_id, delivered.run_id, delivered.id, delivered.file_name or "")
            return DeliveredFile(
                delivery=delivered, local_path=kept if kept.exists() else None, read_back_denied=str(denied)
            )


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
