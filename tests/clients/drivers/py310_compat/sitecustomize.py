"""Lets ``hyper`` 0.7 (used by the ``ksql`` 0.10.2 client) import on Python >= 3.10.

It imports ``Iterable``/``Mapping``/... from ``collections``; they moved to ``collections.abc``
in Python 3.3 and the old names were removed in 3.10. Put on PYTHONPATH for that client only.
"""

import collections
import collections.abc

for _name in ("Iterable", "Mapping", "MutableMapping", "MutableSet", "Sequence", "Callable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
