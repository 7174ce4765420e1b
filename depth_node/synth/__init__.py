"""Procedural synthetic scenes with exact metric depth (tests, demo, evaluation, training)."""
