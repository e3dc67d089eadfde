"""Conformance testing: ksqlDB's QTT cases and ksql-test-runner tests, run on ksqlpy.

``qtt`` loads case files (expanding ``format``/``config`` variants), ``runner`` runs each case
on a fresh in-memory engine, ``records`` turns QTT records into topic records and back,
``compare`` checks outputs and REST responses, ``conditions`` checks ``post`` conditions,
``report`` prints and writes results, and ``cli`` is ``ksqlpy test``. This package sits above
the server layer: it may import any part of ksqlpy, and nothing imports it.
"""
