"""The landing zone: where raw participation events and reference data arrive (docs/landing-zone.md)."""
