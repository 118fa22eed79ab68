"""Celery tasks of the report workflow (filled by the reports work)."""
