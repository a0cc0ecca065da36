"""``python -m include.cli``: the same as the ``beteiligte`` console script."""

from include.cli.app import run

if __name__ == "__main__":
    run()
