#!/bin/bash
# Run once by the postgres image when it initialises the primary's data directory: replicas
# connect for replication with the same user and password as the application.
set -euo pipefail
echo "host replication ${POSTGRES_USER} all scram-sha-256" >>"$PGDATA/pg_hba.conf"
