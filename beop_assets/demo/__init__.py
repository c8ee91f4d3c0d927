"""Demo data: realistic reference data and participation days for the landing zone (SPEC section 2)."""
