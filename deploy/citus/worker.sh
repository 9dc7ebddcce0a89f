#!/bin/sh
# Entry point of a Citus worker in docker-compose-citus.yml: PostgreSQL starts as the image starts
# it, then the worker registers itself with the coordinator (idempotent: citus_add_node returns the
# node it already knows), so `--scale worker=N` needs no hand-typed SQL. Rebalancing stays an
# explicit step: `socialnet shards rebalance`.
set -eu
docker-entrypoint.sh "$@" &
postgres=$!
trap 'kill -TERM "$postgres"; wait "$postgres"' TERM INT

# The image's first-start initialisation runs on a socket only: wait for the real server on TCP.
until pg_isready -q -h 127.0.0.1 -U "$POSTGRES_USER"; do sleep 1; done
self=$(hostname -i | awk '{print $1}')
coordinator() { psql -X -q -At -h coordinator -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "$1"; }
until coordinator "select 1" >/dev/null 2>&1; do sleep 1; done
# Workers must reach the coordinator by name, not as localhost.
coordinator "select citus_set_coordinator_host('coordinator', 5432)
             where not exists (select 1 from pg_dist_node where groupid = 0 and nodename <> 'localhost')" >/dev/null
until coordinator "select citus_add_node('$self', 5432)" >/dev/null; do sleep 2; done
echo "registered with the coordinator as $self:5432"
wait "$postgres"
