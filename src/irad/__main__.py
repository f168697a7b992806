"""``python -m irad``: the ``irad`` command line (the same entry point as the ``irad`` script)."""

from irad.cli import main

if __name__ == "__main__":
    main()
