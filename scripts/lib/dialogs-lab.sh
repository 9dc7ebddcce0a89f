# Sourced by the dialogs lab scripts (scripts/lab/dialogs*.sh), after scripts/lib/server.sh: the
# generated data they share.
#   load URL MESSAGES   # tops the database up to DIALOG_USERS users (default 100,000, seed 42) and
#                       # MESSAGES messages, one hot user writing 10 % of them (seed 7)
#   $unit               # MESSAGES_UNIT: the messages a size of "1m" stands for (default
#                       # 1,000,000; the quick lab run makes it smaller)
#   citus_workers PORT  # the workers (host:port, one per line) of the Citus coordinator on PORT
#   fresh_citus PORT NAME   # database NAME created afresh on the coordinator on PORT and every
#                       # worker, with the extension; prints its URL on the coordinator

unit=${MESSAGES_UNIT:-1000000}
load() { # database URL, messages
  local have users=${DIALOG_USERS:-100000}
  have=$(psql "$1" -X -Atq -c "select count(*) from users" 2>/dev/null || echo 0)
  [ "$have" -ge "$users" ] || $bin fake users --database-url "$1" --count $((users - have)) --seed 42 >/dev/null
  have=$(psql "$1" -X -Atq -c "select count(*) from dialog_messages" 2>/dev/null || echo 0)
  [ "$have" -ge "$2" ] || $bin fake dialogs --database-url "$1" --messages $(($2 - have)) \
    --hot-users 1 --hot-share 0.1 --seed 7
}

citus_workers() { # coordinator port
  psql "postgres://postgres@127.0.0.1:$1/postgres" -X -Atq -c \
    "select nodename || ':' || nodeport from pg_dist_node where groupid <> 0 order by nodeport"
}

fresh_citus() { # coordinator port, database name
  local node
  for node in "127.0.0.1:$1" $(citus_workers "$1"); do
    psql "postgres://postgres@$node/postgres" -X -q -c "drop database if exists $2 with (force)" 2>/dev/null || true
    psql "postgres://postgres@$node/postgres" -X -q -c "create database $2" 2>/dev/null
    psql "postgres://postgres@$node/$2" -X -q -c "create extension citus"
  done
  echo "postgres://postgres@127.0.0.1:$1/$2"
}
