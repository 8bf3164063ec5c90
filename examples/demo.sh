#!/usr/bin/env bash
# examples/demo.sh — what `make demo` runs: the notes web application.
#
# On a fresh Debian 12 machine, as root: installs what it needs, builds and
# installs authctx, then starts a throwaway stack on loopback, as the
# postgres OS user: a PostgreSQL cluster (authctx preloaded) with the notes
# schema and two tenants (examples/notes-app/schema.sql, seed.sql),
# PgBouncer in transaction mode, and the notes app
# (examples/notes-app/app.py).  It then walks through the JSON API with
# printed HTTP requests and responses (walkthrough.py): login, notes kept
# apart by tenant, a forged tenant refused, refresh rotation and reuse,
# logout.  Everything is removed at the end.
#
#   make demo                 the walkthrough, then clean up
#   make demo KEEP=1          leave the stack running afterwards, to open
#                             http://localhost:PORT/ in a browser (passkeys
#                             too); Ctrl-C stops it
#   DEMO_PORT=8080 make demo  the app's port (default: a free one)
#
# `make demo-sql` is the same tour in psql, without the web application.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash test/deps
# AUTHCTX_PGROOT: a private copy of the PostgreSQL installation made by
# `make test` (test/run), so that the demo installs nothing system-wide
pg_config=pg_config
lock=/tmp/authctx-install.lock
if [ -n "${AUTHCTX_PGROOT:-}" ]; then
	pg_config=$AUTHCTX_PGROOT$(pg_config --bindir)/pg_config
	lock=$AUTHCTX_PGROOT/authctx-install.lock
	[ -x "$pg_config" ] || { echo "demo: no PostgreSQL copy in $AUTHCTX_PGROOT (make test creates it)" >&2; exit 1; }
fi
exec 9>"$lock"
flock 9
make -s PG_CONFIG="$pg_config" >/dev/null
make -s PG_CONFIG="$pg_config" install >/dev/null
exec 9>&-

bindir=$("$pg_config" --bindir)
work=$(mktemp -d /tmp/authctx-demo.XXXXXX)
chmod 755 "$work"
chown postgres "$work"
free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
pgport=$(free_port)
bport=$(free_port)
port=${DEMO_PORT:-$(free_port)}
# run as postgres from a directory it can enter
as_pg() { (cd "$work" && runuser -u postgres -- "$@"); }
app_pid=""
cleanup() {
	[ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null && wait "$app_pid" 2>/dev/null
	[ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null
	as_pg "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -t 1 ]; then
	say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
else
	say() { printf '\n%s\n' "$*"; }
fi

say "Starting a throwaway stack: PostgreSQL (authctx preloaded) -> PgBouncer (transaction mode) -> notes app"
as_pg "$bindir/initdb" -D "$work/data" -A trust >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $pgport
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'authctx'
authctx.secret_key = '$(/usr/bin/python3 -c 'import secrets; print(secrets.token_hex(32))')'
CONF
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/postgresql.log" -w start >/dev/null
as_pg "$bindir/createdb" -h "$work" -p "$pgport" notes
for f in schema.sql seed.sql; do
	as_pg "$bindir/psql" -X -q -o /dev/null -v ON_ERROR_STOP=1 -h "$work" -p "$pgport" \
		-d notes -f "$root/examples/notes-app/$f"
done

cat > "$work/pgbouncer.ini" <<INI
[databases]
notes = host=$work port=$pgport dbname=notes
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $work/users.txt
pool_mode = transaction
default_pool_size = 2
server_reset_query =
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
INI
printf '"notes_app" ""\n"notes_registrar" ""\n' > "$work/users.txt"
chown postgres "$work/pgbouncer.ini" "$work/users.txt"
as_pg pgbouncer -d -q "$work/pgbouncer.ini"

# the app reads its pages from the checkout: a copy postgres can read
cp -r "$root/examples/notes-app" "$work/app"
chown -R postgres "$work/app"
# setpriv execs (runuser would stay in between and not pass on a signal)
(cd "$work" && exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
	/usr/bin/python3 "$work/app/app.py" --quiet \
	--dsn "host=127.0.0.1 port=$bport dbname=notes user=notes_app" \
	--registrar-dsn "host=127.0.0.1 port=$bport dbname=notes user=notes_registrar" \
	--listen "127.0.0.1:$port" --origin "http://localhost:$port" \
	--outbox "$work/outbox.jsonl") >"$work/app.log" 2>&1 &
app_pid=$!
for _ in $(seq 1 100); do
	/usr/bin/python3 - "$port" <<'PY' 2>/dev/null && break
import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/healthz" % sys.argv[1], timeout=1)
PY
	sleep 0.1
done
echo "postgresql :$pgport (unix socket in $work), pgbouncer 127.0.0.1:$bport, notes app http://localhost:$port"

/usr/bin/python3 "$root/examples/notes-app/walkthrough.py" "http://127.0.0.1:$port"

if [ -n "${KEEP:-}" ]; then
	say "The stack keeps running: open http://localhost:$port/ in a browser on this machine"
	cat <<EOF
  sign in as alice@acme.test, bob@globex.test or carol@both.test,
  password: correct horse battery staple (carol: type a tenant, acme or globex)
  each tenant's own host: http://acme.localhost:$port/ and http://globex.localhost:$port/
  passkeys: "Add a passkey" on the notes page, then "Sign in with a passkey"
  "forgot password" and "verify email" links are written to $work/outbox.jsonl (no mail server)
  from another machine: ssh -L $port:127.0.0.1:$port <this machine>, then the same URLs
Ctrl-C stops everything and removes the throwaway cluster.
EOF
	wait "$app_pid"
else
	say "Done: the throwaway stack is removed (make demo KEEP=1 keeps it running for a browser)."
fi
