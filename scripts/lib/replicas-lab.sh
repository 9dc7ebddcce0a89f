# Sourced by the replicas lab scripts (scripts/lab/replicas*.sh), after scripts/lib/server.sh:
# the stack of scripts/stack/replicas-local.sh with two replicas, a release build, and the
# generated users on the primary. Run from the repository's root.
#   replicas_lab_stack USERS   # sets urls (the primary's first) and primary; `socialnet fake
#                              # users` tops the primary up to USERS (seed 42, as the other labs)
#                              # and waits until both replicas have replayed them; sets nodes to
#                              # the --node-pid arguments of `socialnet bench` for the three nodes

replicas_lab_stack() { # users
  local users=$1 have written replica i name
  mapfile -t urls < <(scripts/stack/replicas-local.sh start 2 --sync async)
  primary=${urls[0]}
  build_release
  have=$(psql "$primary" -X -Atq -c "select count(*) from users" 2>/dev/null || echo 0)
  [ "$have" -ge "$users" ] ||
    $bin fake users --database-url "$primary" --count $((users - have)) --seed 42
  # Asked on the maintenance database: the application's may not exist before the server makes it.
  written=$(psql "${primary%/*}/postgres" -X -Atq -c "select pg_current_wal_lsn()")
  for replica in "${urls[@]:1}"; do
    until [ "$(psql "${replica%/*}/postgres" -X -Atq -c "select pg_last_wal_replay_lsn() >= '$written'")" = t ]; do
      sleep 1
    done
  done
  nodes=()
  for i in 0 1 2; do
    name=$([ "$i" = 0 ] && echo primary || echo "replica$i")
    nodes+=(--node-pid "$name=$(scripts/stack/replicas-local.sh pid "$i")")
  done
}
