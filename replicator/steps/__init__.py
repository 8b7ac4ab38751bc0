"""The steps of a run, in order; one module each."""

from __future__ import annotations

from replicator.steps.base import Step
from replicator.steps.binlog_format import BinlogFormat
from replicator.steps.binlog_position import BinlogPosition
from replicator.steps.binlog_retention import BinlogRetention
from replicator.steps.catch_up import CatchUp
from replicator.steps.clone import Clone
from replicator.steps.clone_binlog import CloneBinlog
from replicator.steps.preflight import Preflight
from replicator.steps.reboot_writer import RebootWriter
from replicator.steps.replication_user import ReplicationUser
from replicator.steps.start_replication import StartReplication
from replicator.steps.upgrade_clone import UpgradeClone

RUN_STEPS: tuple[Step, ...] = (
    Preflight(),
    BinlogFormat(),
    RebootWriter(),
    ReplicationUser(),
    BinlogRetention(),
    Clone(),
    BinlogPosition(),
    UpgradeClone(),
    CloneBinlog(),
    StartReplication(),
    CatchUp(),
)

__all__ = ["RUN_STEPS", "Step"]
