"""Demo data: realistic reference data and participation days for the landing zone (docs/landing-zone.md)."""
