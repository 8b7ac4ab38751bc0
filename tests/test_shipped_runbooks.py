"""The runbooks shipped in runbooks/ load and say what they promise."""

from __future__ import annotations

from pathlib import Path

from replicator.runbook import load_runbook

RUNBOOKS = Path(__file__).resolve().parents[1] / "runbooks"


def test_sandbox_runbook_targets_the_sandbox() -> None:
    """runbooks/sandbox.yaml names the sandbox's clusters and cuts over by rename."""
    runbook = load_runbook(RUNBOOKS / "sandbox.yaml")

    assert runbook.source.cluster == "sandbox-source"
    assert runbook.source.parameter_group == "sandbox-source-params"
    assert runbook.clone.cluster == "sandbox-clone"
    assert runbook.cutover.switch == "rename"
    assert runbook.cutover.app_users == ["shop_app"]
    assert str(runbook.source.admin.password) == "{env: REPLICATOR_ADMIN_PASSWORD}"


def test_migration_example_keeps_a_way_back() -> None:
    """The migration example replicates in reverse and skips one known duplicate."""
    runbook = load_runbook(RUNBOOKS / "migration.example.yaml")

    assert runbook.cutover.rollback == "reverse_replication"
    assert [rule.name for rule in runbook.catch_up.skip_policy] == [
        "webhook-duplicates"
    ]
    assert runbook.maintenance_window is not None
    assert str(runbook.maintenance_window) == "sun:02:00-sun:04:00"


def test_version_upgrade_example_upgrades_the_clone_to_v3() -> None:
    """The upgrade example names a v3 target and an 8.0-family group for the clone."""
    runbook = load_runbook(RUNBOOKS / "version-upgrade.example.yaml")

    assert runbook.clone.engine_version == "8.0.mysql_aurora.3.05.2"
    assert runbook.clone.parameter_group == "billing-80-cluster-params"
    assert runbook.catch_up.skip_policy == []
    assert runbook.cutover.rollback == "none"
