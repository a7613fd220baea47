"""``python -m kush`` runs the ``kush`` command."""

from kush.cli import main

raise SystemExit(main())
