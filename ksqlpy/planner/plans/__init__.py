"""Planning statements into ksqlDB plans (see :mod:`ksqlpy.planner.plans.queries`)."""

from ksqlpy.planner.plans.queries import (
    PlanContext,
    PlannedQuery,
    TopicShape,
    fit_to_sink,
    insert_target,
    plan_create_as_select,
    plan_insert_into,
)

__all__ = ["PlanContext", "PlannedQuery", "TopicShape", "fit_to_sink", "insert_target", "plan_create_as_select", "plan_insert_into"]
