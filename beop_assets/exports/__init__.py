"""Exports: what each customer receives (the registry, the file names, the CSV and ndJSON files)."""
