# Sourced by the dialogs lab scripts (scripts/lab/dialogs*.sh), after scripts/lib/server.sh: the
# generated data they share.
#   load URL MESSAGES   # tops the database up to 100,000 users (seed 42) and MESSAGES messages,
#                       # one hot user writing 10 % of them (seed 7)

load() { # database URL, messages
  local have
  have=$(psql "$1" -X -Atq -c "select count(*) from users" 2>/dev/null || echo 0)
  [ "$have" -ge 100000 ] || $bin fake users --database-url "$1" --count $((100000 - have)) --seed 42 >/dev/null
  have=$(psql "$1" -X -Atq -c "select count(*) from dialog_messages" 2>/dev/null || echo 0)
  [ "$have" -ge "$2" ] || $bin fake dialogs --database-url "$1" --messages $(($2 - have)) \
    --hot-users 1 --hot-share 0.1 --seed 7
}
