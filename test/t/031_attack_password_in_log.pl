# Attack: read passwords in the server log.  A failed login raises 28P01,
# and with the default log_min_error_statement = error the server logs the
# statement after it: "STATEMENT: SELECT authctx.login('a@b', 'password')"
# for every client that sends its parameters inline (psycopg2 and others
# interpolate them), every wrong password (often a near miss of the right
# one) included; set_password's refusals the same; and a duration line
# (log_min_duration_statement) or the bind parameters of the extended
# protocol quote them whether the call failed or not (log_statement, too,
# before it runs).  Passwords have no shape to redact: the statement that
# passes one is hidden instead.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('password_log');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'authctx'",
	"log_statement = 'all'",
	'max_worker_processes = 16',
	'authctx.password_memlimit = 8MB',
	'authctx.password_opslimit = 2',
	'log_min_duration_statement = 0',
	'log_parameter_max_length = -1',
	'log_parameter_max_length_on_error = -1', ''));
$node->start;
$node->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  CREATE ROLE app LOGIN;
  GRANT authctx_app TO app;
  SELECT authctx.create_tenant('acme');
  SELECT authctx.add_member('acme', authctx.create_user('alice@acme.test'));
  SELECT authctx.set_password(id, 'Right-Horse-Battery-1') FROM authctx.users;
});

my $log_start = -s $node->logfile;

# simple protocol: a wrong password, the right one, an unknown email, a
# login in a read-only transaction (refused before any password is tried),
# a password set_password refuses, a statement failing after a login
$node->psql('postgres', q{SELECT authctx.login('alice@acme.test', 'Wrong-Horse-Battery-2')},
	extra_params => [ '-U', 'app' ]);
$node->psql('postgres', q{SELECT authctx.login('alice@acme.test', 'Right-Horse-Battery-1')},
	extra_params => [ '-U', 'app' ]);
$node->psql('postgres', q{SELECT authctx.login('bob@acme.test', 'Bobs-Secret-Word-3')},
	extra_params => [ '-U', 'app' ]);
$node->psql('postgres', q{BEGIN READ ONLY; SELECT authctx.login('alice@acme.test', 'Read-Only-Guess-4'); COMMIT;},
	extra_params => [ '-U', 'app' ]);
$node->psql('postgres', q{SELECT authctx.set_password(id, 'Short5') FROM authctx.users});
$node->psql('postgres', q{SELECT authctx.login('alice@acme.test', 'Right-Horse-Battery-1'), 1/0},
	extra_params => [ '-U', 'app' ]);
# an ordinary failing statement keeps its STATEMENT line
$node->psql('postgres', q{SELECT 'no secret here', 1/0});

# extended protocol, the password as a bind parameter
my $dir = PostgreSQL::Test::Utils::tempdir;
PostgreSQL::Test::Utils::append_to_file("$dir/login.sql", "SELECT authctx.login(:email, :pw);\n");
for my $pw ('Bound-Guess-Number-6', 'Right-Horse-Battery-1')
{
	my ($o, $e);
	IPC::Run::run([ 'pgbench', '-n', '-t', '1', '-M', 'extended', '-f', "$dir/login.sql",
		'-D', 'email=alice@acme.test', '-D', "pw=$pw",
		'-h', $node->host, '-p', $node->port, '-U', 'app', 'postgres' ],
		'>', \$o, '2>', \$e);
}

my $log = substr(PostgreSQL::Test::Utils::slurp_file($node->logfile), $log_start);
like($log, qr/ERROR:  login failed/, 'the failed logins were logged');
like($log, qr/statement not logged: it passed a password to authctx/,
	'a failing statement that passed a password says why it is not logged');
for my $pw ('Wrong-Horse-Battery-2', 'Right-Horse-Battery-1', 'Bobs-Secret-Word-3',
	'Read-Only-Guess-4', 'Short5', 'Bound-Guess-Number-6')
{
	unlike($log, qr/\Q$pw\E/, "password $pw is nowhere in the log");
}
like($log, qr/STATEMENT:  SELECT 'no secret here', 1\/0/,
	'a statement without a password is still logged with its error');
like($log, qr/parameters: \(hidden: the statement passed a password to authctx\)/,
	'bind parameters of a login are hidden');
like($log, qr/LOG:  statement: \(hidden: the statement passed a password to authctx\)/,
	'log_statement hides a login');
like($log, qr/LOG:  statement: SELECT 'no secret here', 1\/0/,
	'and logs other statements');

$node->stop;
done_testing();
