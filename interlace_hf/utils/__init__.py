"""Helpers every stage shares: atomic output directories and JSON files (`fileio`), device and dtype resolution
(`runtime`). No torch at import."""
