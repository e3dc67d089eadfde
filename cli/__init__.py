"""The ksqlpy shell: an interactive client of the ksqlDB REST API (it speaks HTTP only and
imports nothing from ksqlpy). Entry point: ``cli.main`` (``ksqlpy shell``, ``python -m cli``).
"""
