"""The ``compliance`` command line."""
