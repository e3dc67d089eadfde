"""Joins at run time: the join tree a plan's join steps compile to (:mod:`.plan`,
:mod:`.compile`), the join operators over micro-batches with their state in DuckDB
(:mod:`.operator`), and the runner reading all of a join's topics (:mod:`.runner`)."""
