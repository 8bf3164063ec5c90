# PgBouncer in transaction mode, one server connection shared by two clients
# of different tenants: the context never crosses from one client to the
# next, including after errors and aborted transactions.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $pgbouncer = '/usr/sbin/pgbouncer';
plan skip_all => 'pgbouncer not installed' unless -x $pgbouncer;

my $node = PostgreSQL::Test::Cluster->new('bouncer_primary');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'authctx'\n");
$node->start;

$node->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  CREATE ROLE app LOGIN;
  GRANT authctx_app TO app;
  SELECT authctx.create_tenant('acme');
  SELECT authctx.create_tenant('globex');
  SELECT authctx.add_member('acme', authctx.create_user('alice@acme.test'));
  SELECT authctx.add_member('globex', authctx.create_user('bob@globex.test'));
  CREATE TABLE notes (id serial, tenant_id uuid NOT NULL, body text);
  SELECT authctx.enable_tenant_isolation('notes');
  GRANT SELECT, INSERT ON notes TO app;
  GRANT USAGE ON SEQUENCE notes_id_seq TO app;
});
my $alice = $node->safe_psql('postgres', q{
  SELECT authctx.create_session(id) FROM authctx.users WHERE email = 'alice@acme.test'});
my $bob = $node->safe_psql('postgres', q{
  SELECT authctx.create_session(id) FROM authctx.users WHERE email = 'bob@globex.test'});
$node->safe_psql('postgres', qq{
  BEGIN; SELECT auth_begin('$alice'); INSERT INTO notes (body) VALUES ('acme secret'); COMMIT;
  BEGIN; SELECT auth_begin('$bob'); INSERT INTO notes (body) VALUES ('globex secret'); COMMIT;});

# PgBouncer: transaction pooling, a single server connection.
my $dir = PostgreSQL::Test::Utils::tempdir;
my $bport = PostgreSQL::Test::Cluster::get_free_port();
my $host = $node->host;
my $pport = $node->port;
PostgreSQL::Test::Utils::append_to_file("$dir/users.txt", qq{"app" ""\n});
PostgreSQL::Test::Utils::append_to_file("$dir/pgbouncer.ini", join("\n",
	'[databases]',
	"appdb = host=$host port=$pport dbname=postgres",
	'[pgbouncer]',
	'listen_addr = 127.0.0.1',
	"listen_port = $bport",
	'unix_socket_dir =',
	'auth_type = trust',
	"auth_file = $dir/users.txt",
	'pool_mode = transaction',
	'default_pool_size = 1',
	'max_client_conn = 20',
	'server_reset_query =',
	"logfile = $dir/pgbouncer.log",
	"pidfile = $dir/pgbouncer.pid", ''));

# Run SQL as one client (one psql connection) through pgbouncer.
sub run_psql_rc
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	# statements go through stdin, one at a time, as a client would send them
	IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0',
		"host=127.0.0.1 port=$bport dbname=appdb user=app" ],
		'<', \"$sql\n", '>', \$out, '2>', \$err);
	chomp $out;
	return ($? >> 8, $out, $err);
}
sub client
{
	my ($sql) = @_;
	my (undef, $out, $err) = run_psql_rc($sql);
	return wantarray ? ($out, $err) : $out;
}

my $bouncer = IPC::Run::start([ $pgbouncer, "$dir/pgbouncer.ini" ],
	'>', "$dir/stdout", '2>', "$dir/stderr");
my $ok = 0;
for (1 .. 100)
{
	my ($rc) = run_psql_rc('SELECT 1');
	if ($rc == 0) { $ok = 1; last; }
	select(undef, undef, undef, 0.1);
}
ok($ok, 'pgbouncer accepts connections');

# Every check below runs as "client B" right after "client A" and reports
# the server backend it ran on, to show that B reused A's connection.
my $pid_a = client('SELECT pg_backend_pid()');
my $pid_b = client('SELECT pg_backend_pid()');
is($pid_a, $pid_b, 'both clients share one server connection');
my $probe = q{SELECT pg_backend_pid(), coalesce(authctx.user_id()::text, 'none'), count(*) FROM notes};

# Client A authenticates inside a transaction and commits.
my ($a1) = client(qq{BEGIN; SELECT 1 FROM auth_begin('$alice'); SELECT pg_backend_pid(), string_agg(body, ',') FROM notes; COMMIT;});
is((split /\n/, $a1)[1], "$pid_a|acme secret", 'client A sees acme rows');
is(client($probe), "$pid_a|none|0", 'client B, on the same backend, inherits no context after A committed');

# Client A authenticates outside a transaction block (one statement).
client(qq{SELECT auth_begin('$alice')});
is(client($probe), "$pid_a|none|0", 'single-statement context does not reach the next client');

# Client A's transaction fails after auth_begin and is rolled back; B comes next.
my ($out, $err) = client(qq{BEGIN; SELECT 1 FROM auth_begin('$alice'); SELECT 1/0; ROLLBACK;});
like($err, qr/division by zero/, 'client A transaction fails');
is(client($probe), "$pid_a|none|0", 'no context after a failed transaction');

# A session-level SET of the context is refused, so nothing can cross that way.
($out, $err) = client(qq{SET authctx.tenant_id = '00000000-0000-0000-0000-000000000000'});
like($err, qr/can only be set by auth_begin/, 'session-level SET of the context is refused');
is(client(q{SELECT pg_backend_pid(), current_setting('authctx.tenant_id')}), "$pid_a|",
	'next client sees an empty setting');

# Client A abandons an open transaction by disconnecting: pgbouncer closes
# that server connection, and the next client gets a clean one.
client(qq{BEGIN; SELECT auth_begin('$alice');});  # no COMMIT: the client just goes away
like(client($probe), qr/^\d+\|none\|0$/, 'no context after a client disconnects mid-transaction');

# Client B authenticates as bob and sees only globex.
is(client(qq{BEGIN; SELECT 1 FROM auth_begin('$bob'); SELECT string_agg(body, ',') FROM notes; COMMIT;}),
	"1\nglobex secret", 'client B sees only globex rows');
my $pid_c = client('SELECT pg_backend_pid()');
like(client($probe), qr/^$pid_c\|none\|0$/, 'and leaves nothing for the next client');

# A failing auth_begin leaves no token in the server log.
client(qq{SELECT auth_begin('${alice}x')});
my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
my $body = substr($alice, 4, 30);
unlike($log, qr/\Q$body\E/, 'server log holds no token');

# Drivers in transaction mode (README, "Behind PgBouncer"): psycopg 3 through
# this PgBouncer, two clients of different tenants taking turns on its one
# server connection, each running the same two statements with bind
# parameters in 20 transactions.  With psycopg's default prepare_threshold
# (5) a client prepares "_pg3_0" on the server connection, and the other
# client, preparing its own "_pg3_0" there, fails (DuplicatePreparedStatement)
# unless PgBouncer (1.21 and later, max_prepared_statements) tracks prepared
# statements itself; with prepare_threshold=None nothing is prepared and
# every transaction succeeds.  Either way, no client ever sees the other's
# rows.
my $python = '/usr/bin/python3';
SKIP:
{
	skip 'python3-psycopg not installed', 3
	  unless -x $python && system($python, '-c', 'import psycopg') == 0;
	PostgreSQL::Test::Utils::append_to_file("$dir/drivers.py", <<'PY');
import sys
import psycopg

dsn, threshold, tok_a, tok_b = sys.argv[1:5]
kw = {} if threshold == "default" else {"prepare_threshold": None}
clients = [(psycopg.connect(dsn, **kw), tok_a, "acme secret"),
           (psycopg.connect(dsn, **kw), tok_b, "globex secret")]
ok = errors = crossed = 0
states = set()
for i in range(20):
    for conn, tok, mine in clients:
        try:
            with conn.transaction():
                conn.execute("SELECT public.auth_begin(%s::text)", (tok,))
                rows = conn.execute("SELECT body FROM notes WHERE id > %s", (0,)).fetchall()
            if [r[0] for r in rows] == [mine]:
                ok += 1
            else:
                crossed += 1
        except psycopg.Error as e:
            errors += 1
            states.add(type(e).__name__)
print("ok=%d errors=%d crossed=%d" % (ok, errors, crossed) + "".join(" " + s for s in sorted(states)))
PY
	my $dsn = "host=127.0.0.1 port=$bport dbname=appdb user=app";
	my $drivers = sub {
		my ($threshold) = @_;
		my ($out, $err) = ('', '');
		IPC::Run::run([ $python, "$dir/drivers.py", $dsn, $threshold, $alice, $bob ],
			'>', \$out, '2>', \$err);
		chomp $out;
		diag($err) if $err ne '';
		return $out;
	};
	my ($bver) = `$pgbouncer --version` =~ /PgBouncer (\d+\.\d+)/;
	my $default = $drivers->('default');
	like($default, qr/crossed=0\b/, "psycopg, default prepare_threshold: no client sees another tenant's rows ($default)");
	if (defined $bver && $bver < 1.21)
	{
		like($default, qr/errors=[1-9].*DuplicatePreparedStatement/,
			"psycopg, default prepare_threshold, PgBouncer $bver: transactions fail on the other client's prepared statement");
	}
	else
	{
		pass("PgBouncer $bver: prepared statements are its own business");
	}
	my $none = $drivers->('none');
	is($none, 'ok=40 errors=0 crossed=0', 'psycopg, prepare_threshold=None: every transaction succeeds, each client sees its own rows');
}

$bouncer->signal('TERM');
$bouncer->finish;
$node->stop;
done_testing();
