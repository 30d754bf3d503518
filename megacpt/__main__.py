"""``python -m megacpt VERB ...``: the ``megacpt`` command (``megacpt.cli``)."""

import sys

from megacpt.cli import main

sys.exit(main())
