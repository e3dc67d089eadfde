"""ksqlpy: a streaming SQL database speaking ksqlDB's dialect.

A statement flows one way through four layers::

    text ──parser──▶ AST ──planner──▶ physical plan ──runtime──▶ records / results ──server──▶ HTTP
         ksql.lark     ast.py   catalog, analyzer,       topic stores, serdes,          REST API,
         builder.py             expressions → DuckDB     micro-batch operators,         push queries
                                SQL (sqlglot)            DuckDB state, command log

Queries run as micro-batches: a batch of records is read from a topic, decoded into an Arrow
table, evaluated by DuckDB with the plan's SQL, encoded and produced to the sink topic, and the
consumed positions are committed with the produced records.
"""

__version__ = "0.1.0"
