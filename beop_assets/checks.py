"""Delivery checks (placeholder until the verification checks land)."""

delivery_checks = []
