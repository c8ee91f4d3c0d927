"""IO managers that deliver a built export file to its customer, and read a delivered file back.

The export asset only builds a local file (`ExportFile`); the IO manager looks the export's
destination up from the partition key, uploads (with the transport's retries), records the attempt
and its result in the delivery ledger, and surfaces the receipt as materialization metadata.
`load_input` downloads what was delivered, which is what the delivery checks verify.

When the customer's key may not read a delivered object back (a GCS key with only Storage Object
Creator), the delivery was proven by its upload receipt instead; the built file is then kept in the
run's spool until the checks have read it (they remove it), so that they can still read the bytes that
the receipt proves were stored, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import ClassVar

from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext

from beop_assets.defs.partitions import split_export_day_key
from beop_assets.defs.resources import ExportRegistry, Warehouse
from beop_assets.delivery import gcs, ledger, sftp
from beop_assets.exports.export_file import ExportFile
from beop_assets.exports.registry import GlobalExport, SpecificExport


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


class _DeliveryIOManager(ConfigurableIOManager):
    registry: ExportRegistry
    warehouse: Warehouse
    sftp_read_back: bool = False
    sftp_stale_temp_age_s: float = 3600.0

    mode: ClassVar[str] = ""

    def _upload(self, export, built: ExportFile, run_id: str) -> tuple:
        """(destination, metadata, attempts) or (destination, metadata, attempts, ledger.Verification)."""
        raise NotImplementedError

    def _download(self, export, file_name: str, local_path: Path) -> None:
        raise NotImplementedError

    def _destination(self, export) -> str:
        raise NotImplementedError

    def handle_output(self, context: OutputContext, obj: ExportFile) -> None:
        export = self.registry.load().get(obj.export_id)
        root = self.warehouse.path()
        delivery_id = ledger.start(
            export.id,
            self.mode,
            obj.day,
            obj.file_name,
            obj.rows,
            obj.bytes,
            obj.sha256,
            self._destination(export),
            context.run_id,
            root=root,
        )
        try:
            destination, metadata, attempts, *proof = self._upload(export, obj, context.run_id)
        except Exception as exc:
            attempts = getattr(exc, "attempts", None)
            ledger.finish(delivery_id, error=f"{type(exc).__name__}: {exc}", attempts=attempts, root=root)
            obj.path.unlink(missing_ok=True)  # a retry rebuilds it from the model: no personal data kept
            raise
        verification = proof[0] if proof else None
        ledger.finish(delivery_id, attempts=attempts, destination=destination, verification=verification, root=root)
        if verification is not None and verification.verified_from == gcs.UPLOAD_RECEIPT:
            kept = self._built_copy(obj.day, obj.export_id, context.run_id, delivery_id, obj.file_name)
            kept.parent.mkdir(parents=True, exist_ok=True)
            obj.path.replace(kept)  # what the checks read: it cannot be read back from the bucket
        else:
            obj.path.unlink(missing_ok=True)  # delivered: the spool keeps nothing it no longer needs
        context.add_output_metadata(
            {
                "destination": MetadataValue.text(destination),
                "file_name": MetadataValue.text(obj.file_name),
                "rows": MetadataValue.int(obj.rows),
                "bytes": MetadataValue.int(obj.bytes),
                "sha256": MetadataValue.text(obj.sha256),
                "delivery_attempts": MetadataValue.int(attempts),
                "delivery_id": MetadataValue.int(delivery_id),
                **metadata,
            }
        )

    def _delivered_folder(self, day: date, export_id: str, run_id: str | None, delivery_id: int) -> Path:
        return self.warehouse.spool(day, export_id, run_id or "adhoc") / "delivered" / str(delivery_id)

    def _built_copy(self, day: date, export_id: str, run_id: str | None, delivery_id: int, file_name: str) -> Path:
        return self._delivered_folder(day, export_id, run_id, delivery_id) / "built" / file_name

    def _last_delivered(self, context: InputContext) -> ledger.Delivery:
        day, export_id = split_export_day_key(context.asset_partition_key)
        delivered = ledger.last_delivered(export_id, day, root=self.warehouse.path())
        if delivered is None:
            raise FileNotFoundError(f"no delivery of export {export_id!r} for {day} in the ledger")
        return delivered

    def load_input(self, context: InputContext) -> DeliveredFile:
        day, _ = split_export_day_key(context.asset_partition_key)
        delivered = self._last_delivered(context)
        file_name = delivered.file_name or ""  # a delivered row always has one
        folder = self._delivered_folder(day, delivered.export_id, delivered.run_id, delivered.id)
        local = folder / file_name
        if not (local.exists() and local.stat().st_size == delivered.bytes):
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._download(self.registry.load().get(delivered.export_id), file_name, local)
            except gcs.ReadBackDenied as denied:
                kept = self._built_copy(day, delivered.export_id, delivered.run_id, delivered.id, file_name)
                return DeliveredFile(
                    delivery=delivered,
                    local_path=kept if kept.exists() else None,
                    read_back_denied=str(denied),
                    folder=folder,
                )
        return DeliveredFile(delivery=delivered, local_path=local, folder=folder)


class SftpDeliveryIOManager(_DeliveryIOManager):
    """Delivers CSV files of specific exports to the customer's SFTP directory."""

    mode: ClassVar[str] = "specific"

    def _destination(self, export: SpecificExport) -> str:
        return f"sftp://{export.sftp.username}@{export.sftp.address}{export.sftp.directory}"

    def _upload(
        self, export: SpecificExport, built: ExportFile, run_id: str
    ) -> tuple[str, dict, int, ledger.Verification]:
        receipt = sftp.deliver_file(
            export.id,
            export.sftp,
            built.path,
            built.file_name,
            read_back=self.sftp_read_back,
            stale_temp_age_s=self.sftp_stale_temp_age_s,
        )
        destination = f"sftp://{export.sftp.username}@{export.sftp.address}{receipt.remote_path}"
        # A crash's leftovers this delivery removed from the customer's directory: kept on record.
        ledger.record_removed_temp_files(
            export.id, self._destination(export), receipt.removed_temp_files, run_id, root=self.warehouse.path()
        )
        return (
            destination,
            {
                "remote_path": MetadataValue.path(receipt.remote_path),
                "host": MetadataValue.text(export.sftp.address),
                "verified_from": MetadataValue.text(receipt.verified),
                "removed_temp_files": MetadataValue.json(list(receipt.removed_temp_files)),
                "duration_s": MetadataValue.float(round(receipt.duration_s, 3)),
            },
            receipt.attempts,
            ledger.Verification(verified_from=receipt.verified),
        )

    def _download(self, export: SpecificExport, file_name: str, local_path: Path) -> None:
        sftp.download_file(export.id, export.sftp, file_name, local_path)


class GcsDeliveryIOManager(_DeliveryIOManager):
    """Delivers gzip ndJSON files of global exports to the customer's bucket."""

    mode: ClassVar[str] = "global"

    def _destination(self, export: GlobalExport) -> str:
        return f"gs://{export.gcs.bucket}/{export.gcs.prefix}"

    def _upload(
        self, export: GlobalExport, built: ExportFile, run_id: str
    ) -> tuple[str, dict, int, ledger.Verification]:
        receipt = gcs.deliver_file(export.id, export.gcs, built.path, built.file_name)
        return (
            receipt.uri,
            {
                "object": MetadataValue.text(receipt.object_name),
                "crc32c": MetadataValue.text(receipt.crc32c),
                "md5": MetadataValue.text(receipt.md5),
                "generation": MetadataValue.int(receipt.generation or 0),
                "verified_from": MetadataValue.text(receipt.verified_from),
                "duration_s": MetadataValue.float(round(receipt.duration_s, 3)),
            },
            receipt.attempts,
            ledger.Verification(
                verified_from=receipt.verified_from,
                built_crc32c=receipt.crc32c,
                built_md5=receipt.md5,
                stored_bytes=receipt.stored.size,
                stored_crc32c=receipt.stored.crc32c,
                stored_md5=receipt.stored.md5,
                generation=receipt.generation,
            ),
        )

    def _download(self, export: GlobalExport, file_name: str, local_path: Path) -> None:
        gcs.download_file(export.id, export.gcs, file_name, local_path)
