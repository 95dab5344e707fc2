#!/bin/sh
# Creates or upgrades Temporal's two PostgreSQL databases (persistence and
# visibility) with temporal-sql-tool from temporalio/admin-tools. Every step is
# idempotent, so the job runs on every `up`: a newer server image is upgraded
# to its schema before it starts.
set -eu

PLUGIN="${DB:-postgres12}"
HOST="${POSTGRES_SEEDS:-temporal-postgresql}"
PORT="${DB_PORT:-5432}"
DB_USER="${POSTGRES_USER:-temporal}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

sql_tool() {
    temporal-sql-tool --plugin "$PLUGIN" --ep "$HOST" -p "$PORT" -u "$DB_USER" "$@"
}

setup() {
    database="$1"
    versioned="$2"
    echo "schema: $database"
    sql_tool --db "$database" create
    sql_tool --db "$database" setup-schema -v 0.0
    sql_tool --db "$database" update-schema -d "$SCHEMA_ROOT/$versioned/versioned"
}

setup temporal temporal
setup temporal_visibility visibility
echo "schema: ready"
