"""Cutover and rollback: the same steps, run in either direction.

Cutover moves writes from the source to the caught-up clone; rollback (after
a cutover with reverse replication) moves them back. Each direction's steps
are journaled under their own names, so both can be resumed after a crash.
"""

from __future__ import annotations

from replicator.steps.base import Step
from replicator.steps.cutover.direction import FORWARD, ROLLBACK
from replicator.steps.cutover.drain import Drain
from replicator.steps.cutover.freeze import Freeze
from replicator.steps.cutover.guardrails import Guardrails
from replicator.steps.cutover.open_writes import OpenWrites
from replicator.steps.cutover.reverse import ReverseReplication
from replicator.steps.cutover.stop_replication import StopReplication
from replicator.steps.cutover.switch import Switch

CUTOVER_STEPS: tuple[Step, ...] = (
    Guardrails(FORWARD),
    Freeze(FORWARD),
    Drain(FORWARD),
    StopReplication(FORWARD),
    Switch(FORWARD),
    ReverseReplication(),
    OpenWrites(FORWARD),
)

ROLLBACK_STEPS: tuple[Step, ...] = (
    Guardrails(ROLLBACK),
    Freeze(ROLLBACK),
    Drain(ROLLBACK),
    StopReplication(ROLLBACK),
    Switch(ROLLBACK),
    OpenWrites(ROLLBACK),
)

__all__ = ["CUTOVER_STEPS", "ROLLBACK_STEPS"]
