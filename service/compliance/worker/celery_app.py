"""Entry module for ``celery -A compliance.worker.celery_app ...`` (status, inspect, purge, worker).

Building the app reads settings and opens nothing; connections start with the worker.
"""

from compliance.messaging import create_celery_app
from compliance.settings import Settings
from compliance.worker import control, signals

app = create_celery_app(Settings())
signals.connect(app)
__all__ = ["app", "control"]  # control: its commands register on import
