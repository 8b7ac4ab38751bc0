"""moto's RDS backend, adapted where Aurora behaves differently.

moto models the RDS API but not Aurora's behaviour behind it. Each adaptation
below names the Aurora behaviour it reproduces and has a test in
``tests/sandbox/test_aurora_behaviour.py``. The adaptations patch moto's
classes in this (the supervisor's) process only; the pinned moto version in
``pyproject.toml`` is the one they were written against.

Long operations (a clone's copy, a reboot, an upgrade) run in background
threads: the API answers at once with a transitional status, as AWS does, and
the status turns ``available`` when the data plane is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from moto.rds import exceptions as _exceptions
from moto.rds import models as _models

from replicator.mysql.flavor import family_of, generation_of
from replicator.sandbox.dataplane import DataPlane
from replicator.sandbox.mariadb import ServerOptions

# moto's classes are patched at run time; they are handled as Any here.
models: Any = _models
exceptions: Any = _exceptions
InvalidParameterCombination = exceptions.InvalidParameterCombination
InvalidParameterValue = exceptions.InvalidParameterValue
RDSClientError = exceptions.RDSClientError

LOOPBACK = "127.0.0.1"
PENDING_REBOOT = "pending-reboot"
# The parameters the sandbox's servers act on, with Aurora's defaults.
CLUSTER_DEFAULTS: dict[str, tuple[str, str]] = {
    "binlog_format": ("OFF", "static"),
    "aurora_enhanced_binlog": ("0", "static"),
    "binlog_row_image": ("FULL", "dynamic"),
}
INSTANCE_DEFAULTS: dict[str, tuple[str, str]] = {
    "read_only": ("{TrueIfReplica}", "dynamic"),
}
_STATIC_CLUSTER_PARAMETERS = ("binlog_format",)

_plane: DataPlane | None = None
_restoring = threading.local()


def plane() -> DataPlane:
    """Return the data plane the adaptations act on."""
    assert _plane is not None, "control plane adaptations not installed"
    return _plane


class SandboxEvent:
    """An RDS event with a message of the sandbox's making."""

    def __init__(self, resource: Any, message: str, categories: list[str]) -> None:
        self.source_identifier = resource.resource_id
        self.source_type = resource.event_source_type
        self.message = message
        self.event_categories = categories
        self.source_arn = resource.arn
        self.date = datetime.now(UTC)


def _in_background(work: Callable[[], None], on_error: Callable[[], None]) -> None:
    def run() -> None:
        try:
            work()
        except Exception:
            on_error()
            raise

    threading.Thread(target=run, daemon=True).start()


# --- parameter groups ------------------------------------------------------------


def _seed(parameters: dict[str, Any], defaults: dict[str, tuple[str, str]]) -> None:
    for name, (value, apply_type) in defaults.items():
        parameters.setdefault(name, {}).update(
            {
                "ParameterValue": value,
                "Source": "engine-default",
                "ApplyType": apply_type,
                "IsModifiable": True,
            }
        )


def _cluster_group(backend: Any, name: str, family: str) -> Any:
    """Return a cluster parameter group, creating a default one on first use."""
    groups = backend.db_cluster_parameter_groups
    if name not in groups and name.startswith("default."):
        groups[name] = models.DBClusterParameterGroup(
            backend=backend,
            db_cluster_parameter_group_name=name,
            description=f"Default cluster parameter group for {family}",
            db_parameter_group_family=family,
        )
        _seed(groups[name].parameters, CLUSTER_DEFAULTS)
    return groups.get(name)


def _parameter_value(group: Any, name: str) -> str | None:
    if group is None:
        return None
    value = group.parameters.get(name, {}).get("ParameterValue")
    return None if value is None else str(value)


def _static_parameters(backend: Any, cluster: Any) -> dict[str, str]:
    group = backend.db_cluster_parameter_groups.get(cluster.parameter_group)
    return {
        name: _parameter_value(group, name) or CLUSTER_DEFAULTS[name][0]
        for name in _STATIC_CLUSTER_PARAMETERS
    }


def _server_options(backend: Any, cluster: Any, instance: Any) -> ServerOptions:
    binlog_format = _static_parameters(backend, cluster)["binlog_format"]
    group = backend.db_parameter_groups.get(instance.db_parameter_group_name or "")
    read_only = _parameter_value(group, "read_only")
    return ServerOptions(
        binlog_format=None if binlog_format.upper() == "OFF" else binlog_format.upper(),
        read_only=read_only == "1",
    )


def _refuse_default(name: str) -> None:
    if name.startswith("default."):
        raise InvalidParameterValue("Cannot modify a default parameter group.")


def _patch_parameter_groups() -> None:
    backend_cls = models.RDSBackend
    create_cluster_group = backend_cls.create_db_cluster_parameter_group
    modify_cluster_group = backend_cls.modify_db_cluster_parameter_group
    create_group = backend_cls.create_db_parameter_group
    modify_group = backend_cls.modify_db_parameter_group

    def create_db_cluster_parameter_group(self: Any, *args: Any, **kwargs: Any) -> Any:
        group = create_cluster_group(self, *args, **kwargs)
        _seed(group.parameters, CLUSTER_DEFAULTS)
        return group

    def modify_db_cluster_parameter_group(
        self: Any,
        db_cluster_parameter_group_name: str,
        db_cluster_parameter_group_parameters: Iterable[dict[str, Any]],
    ) -> Any:
        _refuse_default(db_cluster_parameter_group_name)
        changes = [
            dict(p, Source="user") for p in db_cluster_parameter_group_parameters
        ]
        return modify_cluster_group(self, db_cluster_parameter_group_name, changes)

    def create_db_parameter_group(self: Any, kwargs: dict[str, Any]) -> Any:
        group = create_group(self, kwargs)
        _seed(group.parameters, INSTANCE_DEFAULTS)
        return group

    def modify_db_parameter_group(
        self: Any,
        db_parameter_group_name: str,
        db_parameter_group_parameters: Iterable[dict[str, Any]],
    ) -> Any:
        _refuse_default(db_parameter_group_name)
        changes = [dict(p, Source="user") for p in db_parameter_group_parameters]
        group = modify_group(self, db_parameter_group_name, changes)
        _apply_dynamic(self, db_parameter_group_name)
        return group

    backend_cls.create_db_cluster_parameter_group = create_db_cluster_parameter_group
    backend_cls.modify_db_cluster_parameter_group = modify_db_cluster_parameter_group
    backend_cls.create_db_parameter_group = create_db_parameter_group
    backend_cls.modify_db_parameter_group = modify_db_parameter_group


def _apply_dynamic(backend: Any, group_name: str) -> None:
    """Apply ``read_only`` at once on every writer using the group (it is dynamic)."""
    value = _parameter_value(backend.db_parameter_groups.get(group_name), "read_only")
    for instance in list(backend.databases.values()):
        cluster_id = getattr(instance, "db_cluster_identifier", None)
        if instance.db_parameter_group_name == group_name and cluster_id:
            plane().set_read_only(cluster_id, value == "1")


# --- clusters ----------------------------------------------------------------------


def _exists(name: str) -> Exception:
    error: Exception = RDSClientError(
        "DBClusterAlreadyExistsFault", f"DB Cluster {name} already exists"
    )
    return error


def _patch_clusters() -> None:
    backend_cls = models.RDSBackend
    create_cluster = backend_cls.create_db_cluster
    restore = backend_cls.restore_db_cluster_to_point_in_time
    modify_cluster = backend_cls.modify_db_cluster
    delete_cluster = backend_cls.delete_db_cluster

    def create_db_cluster(self: Any, kwargs: dict[str, Any]) -> Any:
        cluster_id = kwargs["db_cluster_identifier"]
        if cluster_id in self.clusters:
            raise _exists(cluster_id)
        version = kwargs.get("engine_version") or "8.0.mysql_aurora.3.05.2"
        kwargs["engine_version"] = version
        family = family_of(generation_of(version))
        group = kwargs.get("db_cluster_parameter_group_name") or f"default.{family}"
        kwargs["db_cluster_parameter_group_name"] = group
        _cluster_group(self, group, family)
        cluster = create_cluster(self, kwargs)
        restored_from = getattr(_restoring, "source", None)
        cluster.port = plane().register_cluster(cluster_id, version, restored_from)
        return cluster

    def restore_db_cluster_to_point_in_time(
        self: Any,
        db_cluster_identifier: str,
        source_db_cluster_identifier: str,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if db_cluster_identifier in self.clusters:
            raise _exists(db_cluster_identifier)
        _restoring.source = source_db_cluster_identifier
        try:
            return restore(
                self,
                db_cluster_identifier,
                source_db_cluster_identifier,
                *args,
                **kwargs,
            )
        finally:
            _restoring.source = None

    def modify_db_cluster(self: Any, kwargs: dict[str, Any]) -> Any:
        cluster_id = kwargs["db_cluster_identifier"]
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise exceptions.DBClusterNotFoundError(cluster_id)
        new_id = kwargs.get("new_db_cluster_identifier")
        if new_id and new_id != cluster_id and new_id in self.clusters:
            raise _exists(new_id)
        upgrade = _check_upgrade(cluster, kwargs)
        result = modify_cluster(self, kwargs)
        if new_id and new_id != cluster_id:
            _move_members(self, cluster_id, new_id)
            cluster.port = plane().rename(cluster_id, new_id)
            result.port = cluster.port
        if upgrade:
            _start_upgrade(self, cluster, upgrade)
            result.status = "upgrading"
        return result

    def delete_db_cluster(
        self: Any, cluster_identifier: str, *args: Any, **kwargs: Any
    ) -> Any:
        cluster = delete_cluster(self, cluster_identifier, *args, **kwargs)
        plane().forget(cluster_identifier)
        return cluster

    backend_cls.create_db_cluster = create_db_cluster
    backend_cls.restore_db_cluster_to_point_in_time = (
        restore_db_cluster_to_point_in_time
    )
    backend_cls.modify_db_cluster = modify_db_cluster
    backend_cls.delete_db_cluster = delete_db_cluster


def _check_upgrade(cluster: Any, kwargs: dict[str, Any]) -> str | None:
    """Return the new engine version when the call upgrades; refuse bad ones."""
    target = kwargs.get("engine_version")
    if not target or target == cluster.engine_version:
        return None
    generation_of(target)
    major_change = target.split(".")[:2] != cluster.engine_version.split(".")[:2]
    if major_change and not kwargs.get("allow_major_version_upgrade"):
        raise InvalidParameterCombination(
            "The AllowMajorVersionUpgrade flag must be present when upgrading "
            "to a new major version."
        )
    return str(target)


def _move_members(backend: Any, old: str, new: str) -> None:
    for instance in backend.databases.values():
        if getattr(instance, "db_cluster_identifier", None) == old:
            instance.db_cluster_identifier = new


def _start_upgrade(backend: Any, cluster: Any, version: str) -> None:
    writer = cluster.writer
    cluster.status = "upgrading"
    if writer is not None:
        writer.status = "upgrading"
    cluster_id = cluster.db_cluster_identifier

    def work() -> None:
        plane().upgrade(cluster_id, version)
        cluster.status = "available"
        if writer is not None:
            writer.status = "available"

    def failed() -> None:
        cluster.status = "incompatible-parameters"

    _in_background(work, failed)


# --- instances ---------------------------------------------------------------------


def _patch_instances() -> None:
    backend_cls = models.RDSBackend
    create_instance = backend_cls.create_db_instance
    reboot_instance = backend_cls.reboot_db_instance
    delete_instance = backend_cls.delete_db_instance

    def create_db_instance(self: Any, db_kwargs: dict[str, Any]) -> Any:
        instance = create_instance(self, db_kwargs)
        cluster_id = db_kwargs.get("db_cluster_identifier")
        if cluster_id:
            _start_member(self, self.clusters[cluster_id], instance)
        return instance

    def reboot_db_instance(self: Any, db_instance_identifier: str) -> Any:
        instance = reboot_instance(self, db_instance_identifier)
        cluster_id = getattr(instance, "db_cluster_identifier", None)
        if cluster_id and instance.is_cluster_writer:
            _start_reboot(self, self.clusters[cluster_id], instance)
        return instance

    def delete_db_instance(
        self: Any, db_instance_identifier: str, *args: Any, **kwargs: Any
    ) -> Any:
        instance = self.databases.get(db_instance_identifier)
        cluster_id = getattr(instance, "db_cluster_identifier", None)
        result = delete_instance(self, db_instance_identifier, *args, **kwargs)
        if cluster_id and getattr(instance, "is_cluster_writer", False):
            plane().remove_writer(cluster_id)
        return result

    backend_cls.create_db_instance = create_db_instance
    backend_cls.reboot_db_instance = reboot_db_instance
    backend_cls.delete_db_instance = delete_db_instance


def _start_member(backend: Any, cluster: Any, instance: Any) -> None:
    """Start the writer's server in the background; a reader shares it."""
    data = plane().clusters[cluster.db_cluster_identifier]
    if data.server is not None:
        instance.port = data.server.port
        return
    instance.status = "creating"
    cluster_id = cluster.db_cluster_identifier
    options = _server_options(backend, cluster, instance)
    group = cluster.parameter_group

    def work() -> None:
        if data.restored_from is not None:
            server = plane().clone_writer(
                cluster_id, instance.db_instance_identifier, options, group
            )
        else:
            master = (cluster.master_username, cluster._master_user_password)
            server = plane().start_writer(
                cluster_id, instance.db_instance_identifier, master, options, group
            )
        instance.port = server.port
        instance.status = "available"

    def failed() -> None:
        instance.status = "failed"

    _in_background(work, failed)


def _start_reboot(backend: Any, cluster: Any, instance: Any) -> None:
    instance.status = "rebooting"
    options = _server_options(backend, cluster, instance)
    group = cluster.parameter_group
    cluster_id = cluster.db_cluster_identifier

    def work() -> None:
        plane().reboot(cluster_id, options, group)
        instance.status = "available"

    def failed() -> None:
        instance.status = "failed"

    _in_background(work, failed)


# --- what describe calls show ---------------------------------------------------------


def _members(self: Any) -> list[dict[str, Any]]:
    static = _static_parameters(self.backend, self)
    status = plane().member_status(
        self.db_cluster_identifier, self.parameter_group, static
    )
    return [
        {
            "DBInstanceIdentifier": member.db_instance_identifier,
            "IsClusterWriter": member.is_cluster_writer,
            "DBClusterParameterGroupStatus": status
            if member.is_cluster_writer
            else "in-sync",
            "PromotionTier": member.promotion_tier,
        }
        for member in self.members
    ]


def _describe_cluster_parameters(
    self: Any, db_cluster_parameter_group_name: str
) -> Any:
    name = db_cluster_parameter_group_name
    if name.startswith("default."):
        _cluster_group(self, name, name.removeprefix("default."))
    return _original_describe_parameters(self, name)


_original_describe_parameters = models.RDSBackend.describe_db_cluster_parameters


def _add_event(backend: Any, instance_id: str, message: str) -> None:
    instance = backend.databases.get(instance_id)
    if instance is None:
        return
    backend.events.append(SandboxEvent(instance, message, ["notification"]))


def install(data_plane: DataPlane, backend_getter: Callable[[], Any]) -> None:
    """Apply every adaptation, acting on ``data_plane``; call once per process."""
    global _plane  # noqa: PLW0603 - the adaptations are process-wide by nature
    _plane = data_plane
    data_plane.record_event = lambda instance, message: _add_event(
        backend_getter(), instance, message
    )
    _patch_parameter_groups()
    _patch_clusters()
    _patch_instances()
    models.DBCluster.endpoint = property(lambda self: LOOPBACK)
    models.DBCluster.reader_endpoint = property(lambda self: LOOPBACK)
    models.DBCluster.db_cluster_members = property(_members)
    models.DBInstance.address = property(lambda self: LOOPBACK)
    models.RDSBackend.describe_db_cluster_parameters = _describe_cluster_parameters
