"""``python -m cli``: the shell without the ``ksqlpy`` command."""

import sys

from cli.main import main

sys.exit(main())
