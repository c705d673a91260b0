"""Versioned prompt templates and domain packs (data, not code)."""
