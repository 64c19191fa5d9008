"""The decision flow offline: an in-memory store and decision log and one fixed clock.

The rule scenarios (``nba rules test``) and the what-if simulations (``nba simulate``) decide with the very flow
the service runs; only the store and the log are the memory ones, wired here, as ``decision.app.build_flow`` wires
the Redis ones for the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from decision.decision_log import MemoryDecisionLog
from decision.flow import DecisionFlow, FlowLimits
from decision.strategy import Strategy
from features.memory_store import MemoryOnlineStore
from features.schema import FeatureSchema


@dataclass(frozen=True)
class OfflineFlow:
    """A flow and the memory parts it decides over: the caller writes profiles and contacts into ``store`` and
    reads what was granted in ``log``."""

    flow: DecisionFlow
    store: MemoryOnlineStore
    log: MemoryDecisionLog


def offline_flow(
    strategy: Strategy,
    schema: FeatureSchema,
    limits: FlowLimits,
    now: float,
    capacity_left: Mapping[str, int] | None = None,
) -> OfflineFlow:
    """A flow whose every decision is made at ``now``, over an empty in-memory store. ``capacity_left``: units
    left per ``action_id`` or ``action_id:pool`` (a pool not named starts full, as on the day)."""
    store = MemoryOnlineStore()
    log = MemoryDecisionLog(store, capacity_left)
    flow = DecisionFlow(
        store=store, schema=schema, strategy=strategy, decision_log=log, limits=limits, clock=lambda: now
    )
    return OfflineFlow(flow, store, log)
