"""``python -m ksqlpy``: the same as the ``ksqlpy`` command."""

import sys

from ksqlpy.main import main

sys.exit(main())
