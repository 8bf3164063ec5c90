# With authctx preloaded, nothing shaped like a token reaches the server
# log: not in statement text (log_statement, log_min_duration_statement),
# not in bind parameters, not in the STATEMENT line of errors, not in error
# messages.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('redaction');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'authctx'",
	"log_statement = 'all'",
	'log_min_duration_statement = 0',
	'log_min_error_statement = error',
	'log_parameter_max_length = -1',
	'log_parameter_max_length_on_error = -1', ''));
$node->start;
$node->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  CREATE ROLE app LOGIN;
  GRANT authctx_app TO app;
  SELECT authctx.create_tenant('acme');
  SELECT authctx.add_member('acme', authctx.create_user('alice@acme.test'));
});
my $tok = $node->safe_psql('postgres', q{
  SELECT authctx.create_session(id) FROM authctx.users WHERE email = 'alice@acme.test'});
like($tok, qr/^axs_[A-Za-z0-9_-]{70}$/, 'a session token was issued');
my $body = substr($tok, 4, 24);
my $short = substr($tok, 0, 40);
# a one-time token (magic link, kind axo_) is a token too
my $otok = $node->safe_psql('postgres', q{
  SELECT authctx.create_one_time_token(id, 'magic_link') FROM authctx.users WHERE email = 'alice@acme.test'});
like($otok, qr/^axo_[A-Za-z0-9_-]{70}$/, 'a one-time token was issued');
my $obody = substr($otok, 4, 24);

my $log_start = -s $node->logfile;

# simple protocol: success, failure (token in STATEMENT), token in a message
$node->psql('postgres', qq{SELECT auth_begin('$tok')}, extra_params => [ '-U', 'app' ]);
$node->psql('postgres', qq{SELECT auth_begin('${tok}zz')}, extra_params => [ '-U', 'app' ]);
$node->psql('postgres', qq{SELECT '$tok'::uuid});
$node->psql('postgres', qq{SELECT '$tok'::authctx.token, 1/0});
# a truncated token is still hidden
$node->psql('postgres', qq{SELECT auth_begin('$short')});

# a JWT (the shape is enough; this one is refused): simple protocol, and
# as a bind parameter below
my $jwt_claims = 'eyJzdWIiOiJhbGljZS1zZWNyZXQtc3ViamVjdCJ9';
my $jwt = 'eyJhbGciOiJFZERTQSIsImtpZCI6ImVkLTIwMjQifQ.' . $jwt_claims . '.' . ('Q' x 86);
$node->psql('postgres', qq{SELECT auth_begin('$jwt')}, extra_params => [ '-U', 'app' ]);

# extended protocol with the token as a bind parameter
my $dir = PostgreSQL::Test::Utils::tempdir;
PostgreSQL::Test::Utils::append_to_file("$dir/bind.sql", "SELECT auth_begin(:tok);\n");
PostgreSQL::Test::Utils::append_to_file("$dir/bindfail.sql",
	"SELECT auth_begin(:tok) FROM generate_series(1, 1/0);\n");
for my $bearer ($tok, $jwt)
{
	for my $script ("$dir/bind.sql", "$dir/bindfail.sql")
	{
		my ($o, $e);
		IPC::Run::run([ 'pgbench', '-n', '-t', '1', '-M', 'extended', '-f', $script,
			'-D', "tok=$bearer", '-h', $node->host, '-p', $node->port, '-U', 'app', 'postgres' ],
			'>', \$o, '2>', \$e);
	}
}

# the magic link: used, then used again (fails: STATEMENT logged)
$node->psql('postgres', qq{SELECT authctx.login_with_token('$otok')}, extra_params => [ '-U', 'app' ]);
$node->psql('postgres', qq{SELECT authctx.login_with_token('$otok')}, extra_params => [ '-U', 'app' ]);

my $log = substr(PostgreSQL::Test::Utils::slurp_file($node->logfile), $log_start);
like($log, qr/auth_begin/, 'the statements were logged');
unlike($log, qr/\Q$body\E/, 'no token body anywhere in the log');
my $prefix16 = substr($tok, 4, 16);
unlike($log, qr/\Q$prefix16\E/, 'not even 16 characters of it');
unlike($log, qr/STATEMENT:.*axs_/, 'no unredacted STATEMENT line for a statement holding a token');
like($log, qr/axs_\[REDACTED\]/, 'tokens were replaced by a marker');
like($log, qr/parameters: \$1 = 'axs_\[REDACTED\]'/, 'bind parameters are redacted');
like($log, qr/statement \(redacted\): SELECT auth_begin\('axs_\[REDACTED\]'\)/,
	'a redacted copy of a failing statement is logged');
like($log, qr/invalid input syntax for type uuid: "axs_\[REDACTED\]"/,
	'a token inside an error message is redacted');
unlike($log, qr/\Q$jwt_claims\E/, 'no JWT claims segment anywhere in the log');
like($log, qr/auth_begin\('eyJ\[REDACTED\]'\)/, 'a JWT in a statement is replaced by a marker');
like($log, qr/parameters: \$1 = 'eyJ\[REDACTED\]'/, 'a JWT bind parameter is redacted');
unlike($log, qr/\Q$obody\E/, 'no one-time token body anywhere in the log');
like($log, qr/statement \(redacted\): SELECT authctx.login_with_token\('axo_\[REDACTED\]'\)/,
	'a failing magic-link statement is logged redacted');

$node->stop;
done_testing();
