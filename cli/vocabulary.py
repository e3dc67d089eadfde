"""Words of ksqlDB's dialect the shell knows without asking the server.

Shared by the highlighter and the completer. Stream, table and column names come from the
server at run time (see :mod:`cli.completion`).
"""

from __future__ import annotations

KEYWORDS: frozenset[str] = frozenset(
    """
    ADVANCE ALL ALTER ANALYZE AND ARRAY AS ASC ASSERT AT BEGINNING BETWEEN BY CASE CAST CATALOG
    CHANGES COLUMN COLUMNS CONNECTOR CONNECTORS CREATE DAY DAYS DEFINE DELETE DESC DESCRIBE
    DISTINCT DROP ELSE EMIT END ESCAPE EXISTS EXPLAIN EXTENDED FALSE FINAL FROM FULL FUNCTION
    FUNCTIONS GRACE GROUP HAVING HEADER HEADERS HOPPING HOUR HOURS IF IN INNER INSERT INTERVAL
    INTO IS JOIN KEY LEFT LIKE LIMIT LIST MAP MILLISECOND MILLISECONDS MINUTE MINUTES MONTH
    MONTHS NOT NULL ON OR OUTER PARTITION PARTITIONS PAUSE PERIOD PRIMARY PRINT PROPERTIES
    QUERIES QUERY REPLACE RESUME RETENTION RIGHT RUN SAMPLE SCHEMA SCRIPT SECOND SECONDS SELECT
    SESSION SET SHOW SINK SIZE SOURCE STREAM STREAMS STRUCT TABLE TABLES TERMINATE THEN TIMEOUT
    TO TOPIC TOPICS TRUE TUMBLING TYPE TYPES UNDEFINE UNSET VALUES VARIABLES WHEN WHERE WINDOW
    WINDOWEND WINDOWSTART WITH WITHIN YEAR YEARS ZONE
    """.split()
)

TYPES: frozenset[str] = frozenset(
    """
    BOOLEAN INT INTEGER BIGINT DOUBLE DECIMAL VARCHAR STRING BYTES TIMESTAMP DATE TIME ARRAY MAP
    STRUCT
    """.split()
)

# Common built-in functions; SHOW FUNCTIONS lists them all.
FUNCTIONS: frozenset[str] = frozenset(
    """
    ABS AS_VALUE AVG CEIL COALESCE COLLECT_LIST COLLECT_SET CONCAT CONCAT_WS COUNT
    COUNT_DISTINCT EARLIEST_BY_OFFSET EXPLODE EXTRACTJSONFIELD FLOOR FORMAT_TIMESTAMP IFNULL
    INITCAP INSTR LATEST_BY_OFFSET LCASE LEN MAX MIN PARSE_TIMESTAMP REPLACE ROUND SPLIT
    SUBSTRING SUM TOPK TRIM UCASE UNIX_TIMESTAMP
    """.split()
)

# Pseudo columns every stream and table has.
PSEUDO_COLUMNS: frozenset[str] = frozenset({"ROWTIME", "ROWPARTITION", "ROWOFFSET"})

# Properties users commonly SET.
PROPERTIES: tuple[str, ...] = (
    "auto.offset.reset",
    "ksql.streams.auto.offset.reset",
    "ksql.query.pull.table.scan.enabled",
    "ksql.streams.cache.max.bytes.buffering",
    "ksql.streams.commit.interval.ms",
)

# Shell commands: run on Enter, with or without a trailing ';'.
SHELL_COMMANDS: tuple[str, ...] = (
    "help",
    "exit",
    "quit",
    "clear",
    "history",
    "version",
    "server",
    "output",
    "spool",
    "run script",
)
