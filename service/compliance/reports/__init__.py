"""Compliance reports: facade, storage and the report workflow."""
