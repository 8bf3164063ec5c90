# Attack: a WITH HOLD cursor declared through the extended query protocol
# (Parse/Bind/Execute, as drivers send it) keeps a tenant's rows past the
# end of the context.  The client is psycopg 3 with prepare_threshold=0 and
# prepare=True (named prepared statements), and its server-side cursor API
# (withhold=True), which declares the cursor with bound parameters.  The
# server log (log_statement = all) proves the statements came as "execute"
# messages, not simple queries.  In both preload modes; the simple protocol:
# sql/attack_holdable_cursor.sql.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $python = '/usr/bin/python3';
plan skip_all => 'python3-psycopg not installed'
  unless -x $python && system($python, '-c', 'import psycopg') == 0;

# The client: one connection per case, each case prints one line.
my $client = <<'PY';
import sys
import psycopg

dsn, tok, case = sys.argv[1], sys.argv[2], sys.argv[3]
conn = psycopg.connect(dsn, prepare_threshold=0)
cur = conn.cursor()

def state(e):
    return "refused %s" % e.sqlstate

def fetch_after_commit(name):
    """FETCH ALL in a new transaction; the rows' amounts, or the error."""
    try:
        cur.execute("FETCH ALL FROM %s" % name, prepare=True)
        rows = cur.fetchall()
        conn.commit()
        return "rows %s" % sorted(r[-1] for r in rows)
    except psycopg.Error as e:
        conn.rollback()
        return state(e)

if case == "declare_after_begin":
    cur.execute("SELECT (auth_begin(%s::text)).role", (tok,), prepare=True)
    try:
        cur.execute("DECLARE c CURSOR WITH HOLD FOR SELECT id, amount FROM public.invoices WHERE amount > %s",
                    (0,), prepare=True)
        conn.commit()
        print("declared;", fetch_after_commit("c"))
    except psycopg.Error as e:
        conn.rollback()
        print(state(e) + ";", fetch_after_commit("c"))
elif case == "begin_after_declare":
    cur.execute("DECLARE c CURSOR WITH HOLD FOR SELECT id, amount FROM public.invoices WHERE amount > %s",
                (0,), prepare=True)
    cur.execute("SELECT (auth_begin(%s::text)).role", (tok,), prepare=True)
    try:
        conn.commit()
        print("committed;", fetch_after_commit("c"))
    except psycopg.Error as e:
        print(state(e) + ";", fetch_after_commit("c"))
elif case == "server_cursor":
    cur.execute("SELECT (auth_begin(%s::text)).role", (tok,), prepare=True)
    try:
        sc = conn.cursor("sc", withhold=True)
        sc.execute("SELECT id, amount FROM public.invoices WHERE amount > %s", (0,))
        conn.commit()
        print("declared;", fetch_after_commit("sc"))
    except psycopg.Error as e:
        conn.rollback()
        print(state(e) + ";", fetch_after_commit("sc"))
elif case == "ordinary_cursor":
    cur.execute("SELECT (auth_begin(%s::text)).role", (tok,), prepare=True)
    cur.execute("DECLARE d CURSOR FOR SELECT id, amount FROM public.invoices WHERE amount > %s",
                (0,), prepare=True)
    cur.execute("FETCH ALL FROM d", prepare=True)
    rows = cur.fetchall()
    conn.commit()
    print("rows %s" % sorted(r[-1] for r in rows))
elif case == "holdable_without_context":
    sc = conn.cursor("h", withhold=True)
    sc.execute("SELECT id, amount FROM public.plain WHERE amount > %s", (0,))
    cur.execute("DECLARE hi CURSOR WITH HOLD FOR SELECT id, amount FROM public.invoices WHERE amount > %s",
                (0,), prepare=True)
    conn.commit()
    print(fetch_after_commit("h") + ";", fetch_after_commit("hi"))
PY

for my $mode ('nopreload', 'preload')
{
	my $node = PostgreSQL::Test::Cluster->new("attack_cursor_$mode");
	$node->init;
	$node->append_conf('postgresql.conf', "max_worker_processes = 16\nlog_statement = all\n");
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'authctx'\n")
	  if $mode eq 'preload';
	$node->start;
	$node->safe_psql('postgres', q{
	  SET client_min_messages = warning;
	  CREATE EXTENSION authctx;
	  CREATE ROLE app LOGIN IN ROLE authctx_app;
	  SELECT authctx.create_tenant('acme'), authctx.create_tenant('globex');
	  SELECT authctx.add_member('acme', authctx.create_user('alice@acme.test'));
	  CREATE TABLE public.invoices (id int, tenant_id uuid NOT NULL, amount int);
	  SELECT authctx.enable_tenant_isolation('public.invoices');
	  INSERT INTO public.invoices
	  SELECT 1, id, CASE slug WHEN 'acme' THEN 100 ELSE 200 END FROM authctx.tenants;
	  CREATE TABLE public.plain (id int, amount int);
	  INSERT INTO public.plain VALUES (1, 7), (2, 8);
	  GRANT SELECT ON public.invoices, public.plain TO app;
	});
	my $tok = $node->safe_psql('postgres', q{
	  SELECT authctx.create_session(id) FROM authctx.users WHERE email = 'alice@acme.test'});
	my $dsn = $node->connstr('postgres') . ' user=app';

	my $run = sub {
		my ($case) = @_;
		my ($out, $err) = ('', '');
		IPC::Run::run([ $python, '-c', $client, $dsn, $tok, $case ],
			'>', \$out, '2>', \$err);
		chomp $out;
		diag($err) if $err ne '';
		return $out;
	};

	is($run->('declare_after_begin'), 'refused 42501; refused 34000',
		"$mode: DECLARE WITH HOLD after auth_begin is refused, nothing to fetch");
	is($run->('begin_after_declare'), 'refused 42501; refused 34000',
		"$mode: auth_begin after DECLARE WITH HOLD: COMMIT refused, the cursor is gone");
	is($run->('server_cursor'), 'refused 42501; refused 34000',
		"$mode: psycopg server-side cursor withhold=True in a context is refused");
	is($run->('ordinary_cursor'), 'rows [100]',
		"$mode: an ordinary cursor in a context reads its own tenant");
	is($run->('holdable_without_context'), 'rows [7, 8]; rows []',
		"$mode: holdable cursors without a context still work (isolated rows: none)");

	my $log = slurp_file($node->logfile);
	like($log, qr/execute [^:]*: DECLARE c CURSOR WITH HOLD FOR SELECT id, amount FROM public\.invoices WHERE amount > \$1/,
		"$mode: DECLARE came through the extended protocol");
	like($log, qr/execute [^:]*: DECLARE "sc" CURSOR WITH HOLD FOR SELECT id, amount FROM public\.invoices WHERE amount > \$1/,
		"$mode: the server-side cursor too");
	unlike($log, qr/statement: DECLARE/, "$mode: no DECLARE came as a simple query");
	$node->stop;
}

done_testing();
