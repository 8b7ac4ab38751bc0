"""The ``mysql.rds_*`` procedures, reproduced for the sandbox's MariaDB servers.

Aurora's master user has no SUPER privilege; these procedures do the
replication work with their definer's rights (root), exactly as on Aurora.
Each server carries the procedure names of its engine generation only, taken
from :data:`replicator.mysql.flavor.PROCEDURES`, so calling the other
generation's name fails with error 1305 as it does on Aurora.

Statements are built inside the procedures with ``QUOTE()`` and run through
``PREPARE``; the caller's values never travel through string formatting on the
client side.
"""

from __future__ import annotations

from replicator.mysql.flavor import PROCEDURES, Generation, Procedures

DEFINER = "`root`@`localhost`"
RETENTION_KEY = "binlog retention hours"
MAX_RETENTION_HOURS = 2160
NO_ERROR_MESSAGE = "Replica is running normally; no error to skip."

CONFIGURATION_TABLE = """
CREATE TABLE IF NOT EXISTS mysql.rds_configuration (
  name VARCHAR(100) NOT NULL PRIMARY KEY,
  value VARCHAR(100) NULL,
  description VARCHAR(300) NOT NULL
) ENGINE=InnoDB
"""

SEED_CONFIGURATION = f"""
INSERT IGNORE INTO mysql.rds_configuration (name, value, description) VALUES
('{RETENTION_KEY}', NULL,
 'binlog retention hours specifies the duration in hours before binary logs are
 automatically deleted.')
"""


def _bodies(p: Procedures) -> dict[str, str]:
    """Return the CREATE PROCEDURE statement of each procedure, by full name."""
    return {
        p.set_external_source: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.set_external_source}(
  IN host VARCHAR(255), IN port INT, IN user_name VARCHAR(128),
  IN user_password VARCHAR(255), IN log_file VARCHAR(255), IN log_pos BIGINT,
  IN ssl_encryption INT)
SQL SECURITY DEFINER
BEGIN
  SET @rds_stmt = CONCAT('CHANGE MASTER TO MASTER_HOST=', QUOTE(host),
    ', MASTER_PORT=', CAST(port AS UNSIGNED),
    ', MASTER_USER=', QUOTE(user_name),
    ', MASTER_PASSWORD=', QUOTE(user_password),
    ', MASTER_LOG_FILE=', QUOTE(log_file),
    ', MASTER_LOG_POS=', CAST(log_pos AS UNSIGNED),
    ', MASTER_SSL=', IF(ssl_encryption = 1, 1, 0),
    ', MASTER_CONNECT_RETRY=5, MASTER_USE_GTID=no');
  PREPARE rds_stmt FROM @rds_stmt;
  SET @rds_stmt = NULL;
  EXECUTE rds_stmt;
  DEALLOCATE PREPARE rds_stmt;
END""",
        p.set_external_source_auto_position: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.set_external_source_auto_position}(
  IN host VARCHAR(255), IN port INT, IN user_name VARCHAR(128),
  IN user_password VARCHAR(255), IN ssl_encryption INT, IN delay INT)
SQL SECURITY DEFINER
BEGIN
  SET @rds_stmt = CONCAT('CHANGE MASTER TO MASTER_HOST=', QUOTE(host),
    ', MASTER_PORT=', CAST(port AS UNSIGNED),
    ', MASTER_USER=', QUOTE(user_name),
    ', MASTER_PASSWORD=', QUOTE(user_password),
    ', MASTER_SSL=', IF(ssl_encryption = 1, 1, 0),
    ', MASTER_DELAY=', CAST(IFNULL(delay, 0) AS UNSIGNED),
    ', MASTER_CONNECT_RETRY=5, MASTER_USE_GTID=slave_pos');
  PREPARE rds_stmt FROM @rds_stmt;
  SET @rds_stmt = NULL;
  EXECUTE rds_stmt;
  DEALLOCATE PREPARE rds_stmt;
END""",
        p.start_replication: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.start_replication}()
SQL SECURITY DEFINER
BEGIN
  START SLAVE;
  SELECT 'Replica running normally.' AS Message;
END""",
        p.start_replication_until: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.start_replication_until}(
  IN replication_log_file VARCHAR(255), IN replication_stop_point BIGINT)
SQL SECURITY DEFINER
BEGIN
  SET @rds_stmt = CONCAT('START SLAVE UNTIL MASTER_LOG_FILE=',
    QUOTE(replication_log_file),
    ', MASTER_LOG_POS=', CAST(replication_stop_point AS UNSIGNED));
  PREPARE rds_stmt FROM @rds_stmt;
  SET @rds_stmt = NULL;
  EXECUTE rds_stmt;
  DEALLOCATE PREPARE rds_stmt;
  SELECT 'Replica will stop at the given position.' AS Message;
END""",
        p.stop_replication: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.stop_replication}()
SQL SECURITY DEFINER
BEGIN
  STOP SLAVE;
  SELECT 'Replica is now down or disabled.' AS Message;
END""",
        p.reset_external_source: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.reset_external_source}()
SQL SECURITY DEFINER
BEGIN
  STOP SLAVE;
  RESET SLAVE ALL;
  SELECT 'Replication configuration removed.' AS Message;
END""",
        p.skip_repl_error: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.skip_repl_error}()
SQL SECURITY DEFINER
BEGIN
  DECLARE failed INT DEFAULT 0;
  SELECT COUNT(*) INTO failed
    FROM performance_schema.replication_applier_status_by_coordinator
   WHERE SERVICE_STATE = 'OFF' AND LAST_ERROR_NUMBER <> 0;
  IF failed = 0 THEN
    SELECT '{NO_ERROR_MESSAGE}' AS Message;
  ELSE
    SET GLOBAL sql_slave_skip_counter = 1;
    START SLAVE SQL_THREAD;
    SELECT 'Statement in error has been skipped.' AS Message;
  END IF;
END""",
        p.next_source_log: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.next_source_log}(IN curr_log_index INT)
SQL SECURITY DEFINER
BEGIN
  IF curr_log_index IS NULL OR curr_log_index < 1 THEN
    SIGNAL SQLSTATE '45000'
      SET MESSAGE_TEXT = 'curr_log_index must be the index of the current file';
  END IF;
  STOP SLAVE;
  SET @rds_stmt = CONCAT('CHANGE MASTER TO MASTER_LOG_FILE=',
    QUOTE(CONCAT('mysql-bin-changelog.', LPAD(curr_log_index + 1, 6, '0'))),
    ', MASTER_LOG_POS=4');
  PREPARE rds_stmt FROM @rds_stmt;
  SET @rds_stmt = NULL;
  EXECUTE rds_stmt;
  DEALLOCATE PREPARE rds_stmt;
  START SLAVE;
END""",
        p.set_configuration: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.set_configuration}(
  IN config_name VARCHAR(100), IN config_value VARCHAR(100))
SQL SECURITY DEFINER
BEGIN
  IF config_name <> '{RETENTION_KEY}' THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'unsupported configuration name';
  END IF;
  IF config_value IS NOT NULL AND (CAST(config_value AS SIGNED) < 1
      OR CAST(config_value AS SIGNED) > {MAX_RETENTION_HOURS}) THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT =
      'binlog retention hours must be between 1 and {MAX_RETENTION_HOURS}';
  END IF;
  UPDATE mysql.rds_configuration SET value = config_value
   WHERE name = config_name;
  SET GLOBAL binlog_expire_logs_seconds =
    IFNULL(CAST(config_value AS UNSIGNED), 0) * 3600;
END""",
        p.show_configuration: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.show_configuration}()
SQL SECURITY DEFINER
BEGIN
  SELECT name, value, description FROM mysql.rds_configuration ORDER BY name;
END""",
        p.kill: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.kill}(IN thread_id BIGINT)
SQL SECURITY DEFINER
BEGIN
  SET @rds_stmt = CONCAT('KILL CONNECTION ', CAST(thread_id AS UNSIGNED));
  PREPARE rds_stmt FROM @rds_stmt;
  EXECUTE rds_stmt;
  DEALLOCATE PREPARE rds_stmt;
END""",
        p.kill_query: f"""
CREATE DEFINER={DEFINER} PROCEDURE {p.kill_query}(IN thread_id BIGINT)
SQL SECURITY DEFINER
BEGIN
  SET @rds_stmt = CONCAT('KILL QUERY ', CAST(thread_id AS UNSIGNED));
  PREPARE rds_stmt FROM @rds_stmt;
  EXECUTE rds_stmt;
  DEALLOCATE PREPARE rds_stmt;
END""",
    }


def all_procedure_names() -> set[str]:
    """Return every procedure name of every generation."""
    return {name for procs in PROCEDURES.values() for name in _bodies(procs)}


def install_statements(generation: Generation) -> list[str]:
    """Return the statements that leave exactly ``generation``'s procedures."""
    drops = [
        f"DROP PROCEDURE IF EXISTS {name}" for name in sorted(all_procedure_names())
    ]
    creates = list(_bodies(PROCEDURES[generation]).values())
    return [CONFIGURATION_TABLE, SEED_CONFIGURATION, *drops, *creates]


def retention_statement() -> str:
    """Return the statement that re-applies the stored retention after a start."""
    return (
        "SELECT IFNULL(CAST(value AS UNSIGNED), 0) * 3600 AS seconds "
        f"FROM mysql.rds_configuration WHERE name = '{RETENTION_KEY}'"
    )
