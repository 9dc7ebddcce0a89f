#!/bin/bash
# Entrypoint of a streaming replica (docker-compose.replicas.yml), the image's own postgres:15.
# On first start it copies the primary with pg_basebackup through a replication slot named after
# the replica (REPLICA_NAME), then runs PostgreSQL in recovery with that name as its
# cluster_name, which is the name the primary's synchronous_standby_names lists.
set -euo pipefail
: "${PRIMARY_HOST:?}" "${REPLICA_NAME:?}" "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}"
export PGPASSWORD="$POSTGRES_PASSWORD"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -q -h "$PRIMARY_HOST" -U "$POSTGRES_USER"; do sleep 1; done
  mkdir -p "$PGDATA"
  chown postgres: "$PGDATA"
  chmod 700 "$PGDATA"
  # The slot survives the replica's volume; a new copy takes it over.
  psql -h "$PRIMARY_HOST" -U "$POSTGRES_USER" -d postgres -qAtc \
    "select pg_drop_replication_slot('$REPLICA_NAME') from pg_replication_slots where slot_name = '$REPLICA_NAME'" >/dev/null
  gosu postgres pg_basebackup -h "$PRIMARY_HOST" -U "$POSTGRES_USER" -D "$PGDATA" \
    -X stream -R -C -S "$REPLICA_NAME" --checkpoint=fast
fi
exec gosu postgres postgres -c cluster_name="$REPLICA_NAME" -c hot_standby=on \
  -c hot_standby_feedback=on
