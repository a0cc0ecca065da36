"""The ``beteiligte`` command line tool (``python -m include.cli`` or the console script)."""
