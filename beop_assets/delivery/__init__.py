"""Delivery: getting a built export file onto the customer's SFTP server or GCS bucket, once, whole."""
