"""``python -m replicator``: the same as the ``replicator`` command."""

from replicator.cli.app import main

raise SystemExit(main())
