"""``python -m kosearch`` runs the command-line interface."""

from __future__ import annotations

from kosearch.cli import main

if __name__ == "__main__":
    main()
