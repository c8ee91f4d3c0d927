"""Dagster assets, grouped by what they are about: the participation model and the two export kinds."""
