"""Reusable widgets and dialogs of the terminal app."""
