"""Compliance reporting service: reports over HTTP, delivered by signed webhooks that are never lost."""

__version__ = "0.1.0"
