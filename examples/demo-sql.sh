#!/usr/bin/env bash
# examples/demo-sql.sh — what `make demo-sql` runs: authctx from psql.
#
# On a fresh Debian 12 machine, as root: installs what it needs, builds and
# installs authctx, starts a throwaway cluster as the postgres OS user, and
# walks through two tenants, login, isolation, a forged context and a
# revoked session.  The cluster is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

bash test/deps
exec 9>/tmp/authctx-install.lock
flock 9
make -s >/dev/null
make -s install >/dev/null

bindir=$(pg_config --bindir)
work=$(mktemp -d /tmp/authctx-demo.XXXXXX)
chown postgres "$work"
port=$(( 20000 + RANDOM % 20000 ))
# run as postgres from a directory it can enter (the checkout may be in a
# directory only root can read, and psql warns about its working directory)
as_pg() { (cd "$work" && runuser -u postgres -- "$@"); }
cleanup() {
  as_pg "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

as_pg "$bindir/initdb" -D "$work/data" -A trust >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'authctx'
CONF
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/log" -w start >/dev/null

psql_su()  { as_pg psql -X -q -h "$work" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
psql_app() { as_pg psql -X -q -v SHOW_CONTEXT=never -h "$work" -p "$port" -U app -d postgres "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. CREATE EXTENSION authctx; two tenants, one user each, an application role"
psql_su <<'SQL'
CREATE EXTENSION authctx;
CREATE ROLE app LOGIN;
GRANT authctx_app TO app;
SELECT authctx.create_tenant('acme', 'Acme Inc.') IS NOT NULL AS acme_created,
       authctx.create_tenant('globex', 'Globex Corp.') IS NOT NULL AS globex_created;
SELECT authctx.add_member('acme', authctx.create_user('alice@acme.test', 'Alice'), 'owner');
SELECT authctx.add_member('globex', authctx.create_user('bob@globex.test', 'Bob'));
SELECT authctx.set_password(id, 'correct horse battery staple') FROM authctx.users;
SQL
echo "tenants acme and globex; alice@acme.test (owner of acme), bob@globex.test (member of globex)"

say "2. A DBA isolates a table by tenant (RLS, enforced inside the database)"
psql_su <<'SQL'
CREATE TABLE invoices (id serial PRIMARY KEY, tenant_id uuid NOT NULL, amount numeric);
SELECT authctx.enable_tenant_isolation('invoices');
GRANT SELECT, INSERT, UPDATE, DELETE ON invoices TO app;
GRANT USAGE ON SEQUENCE invoices_id_seq TO app;
\x on
SELECT table_name, rls_enabled, rls_forced, has_policy, has_index, coalesce(problem, 'none') AS problem
  FROM authctx.isolation_report();
SQL

say "3. Alice and Bob log in (argon2id password check); the app receives bearer tokens"
alice=$(psql_app -At -c "SELECT session_token FROM authctx.login('alice@acme.test', 'correct horse battery staple')")
bob=$(psql_app -At -c "SELECT session_token FROM authctx.login('bob@globex.test', 'correct horse battery staple')")
echo "alice's token: ${alice:0:12}... (${#alice} characters)"
echo "bob's token:   ${bob:0:12}... (${#bob} characters)"
echo "a wrong password:"
psql_app -c "SELECT authctx.login('alice@acme.test', 'wrong')" 2>&1 | sed 's/^/   /' || true

say "4. Each request: BEGIN; SELECT auth_begin(token); ... COMMIT"
psql_app <<SQL
BEGIN;
SELECT user_id IS NOT NULL AS authenticated, role, auth_method FROM auth_begin('$alice');
INSERT INTO invoices (amount) VALUES (100), (250);
COMMIT;
BEGIN;
SELECT role FROM auth_begin('$bob');
INSERT INTO invoices (amount) VALUES (999);
COMMIT;
SQL
echo "-- alice's view:"
psql_app <<SQL
BEGIN;
SELECT true AS authenticated FROM auth_begin('$alice') \gset
SELECT id, amount, tenant_id = authctx.tenant_id() AS own_tenant FROM invoices ORDER BY id;
COMMIT;
SQL
echo "-- bob's view:"
psql_app <<SQL
BEGIN;
SELECT true AS authenticated FROM auth_begin('$bob') \gset
SELECT id, amount FROM invoices ORDER BY id;
COMMIT;
SQL
echo "-- without auth_begin (no context): no rows, no writes"
psql_app -c "SELECT count(*) AS visible_rows FROM invoices"
psql_app -c "INSERT INTO invoices (amount) VALUES (1)" 2>&1 | sed 's/^/   /' || true

say "5. Bob tries to forge Alice's tenant"
acme=$(psql_su -At -c "SELECT id FROM authctx.tenants WHERE slug = 'acme'")
psql_app <<SQL 2>&1 | sed 's/^/   /' || true
BEGIN;
SELECT role FROM auth_begin('$bob');
SET LOCAL authctx.tenant_id = '$acme';
ROLLBACK;
BEGIN;
SELECT role FROM auth_begin('$bob');
SELECT set_config('authctx.tenant_id', '$acme', true);
ROLLBACK;
SELECT auth_begin('$bob', 'acme');
SQL

say "6. Alice logs out; her token is refused by the very next request"
psql_app -c "SELECT authctx.logout('$alice')"
psql_app -c "SELECT auth_begin('$alice')" 2>&1 | sed 's/^/   /' || true

say "7. The audit log (readable by authctx_admin)"
psql_su -c "SELECT event, count(*) FROM authctx.audit_log GROUP BY event ORDER BY event"

say "Done: the throwaway cluster is removed."
