"""The landing zone: where raw participation events and reference data arrive (SPEC section 2)."""
