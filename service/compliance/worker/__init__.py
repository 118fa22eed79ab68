"""The Celery side: app factory, per-process runtime, signals. ``celery_app`` is the entry."""
