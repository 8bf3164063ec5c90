# Version upgrades: a database created at 0.1.0 (its install script stays
# shipped) and filled with data is updated with ALTER EXTENSION authctx
# UPDATE.  Checked:
#   (a) the schema then equals a fresh install of the current version: the
#       extension's member objects, as pg_dump --binary-upgrade writes them
#       (it is the one mode that dumps extension members one by one), with
#       OIDs, LSNs and xids normalised away;
#   (b) no row is lost, and tokens issued before the update still
#       authenticate (revoked ones stay refused), passwords still log in,
#       isolation still holds;
#   (c) the current library against a database still at 0.1.0 refuses
#       auth_begin with a message naming ALTER EXTENSION authctx UPDATE,
#       and works the moment the update has committed.
# Every later version adds its hop here (the list in @hops).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($current) = slurp_file("$ENV{TESTDIR}/authctx.control") =~ /default_version\s*=\s*'([^']+)'/;
ok(defined $current, "current version from the control file ($current)");
# every version an upgrade test starts from
my @from = ('0.1.0');

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
max_worker_processes = 16
authctx.password_memlimit = 8MB
authctx.password_opslimit = 2
authctx.cleanup_interval = 0
});
$node->start;
# The extension's objects as pg_dump --binary-upgrade writes them, without
# what differs between any two installs (OIDs, LSNs, xids, the \restrict key).
# The tables registered for pg_dump (pg_extension_config_dump) appear there
# as an array of OIDs: compared instead by name, with their conditions, in
# name order (the order of registration carries no meaning).
sub schema_of
{
	my ($db) = @_;
	my $out = $node->pg_dump_out($db);
	my $config = $node->safe_psql($db, q{
	  SELECT string_agg(pg_catalog.format('%s %L', c::regclass, w), ', ' ORDER BY c::regclass::text)
	    FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, w)
	   WHERE e.extname = 'authctx'});
	$out =~ s/(binary_upgrade_create_empty_extension\('authctx', .*?, )'\{[\d,]*\}', '\{(?:[^']|'')*\}'/$1<config>/;
	my @keep = grep {
		!/binary_upgrade_set_next_|^\\(un)?restrict |^-- Dumped |relfrozenxid|^WHERE oid = '\d+'/
	} split /\n/, $out;
	return join("\n", @keep) . "\n-- config tables: $config\n";
}

# pg_dump through the node's binaries, as the bootstrap superuser.
{
	no strict 'refs';
	*{'PostgreSQL::Test::Cluster::pg_dump_out'} = sub {
		my ($self, $db) = @_;
		my ($stdout, $stderr);
		my $ok = IPC::Run::run(
			[ 'pg_dump', '--binary-upgrade', '--schema-only', '--no-sync',
			  '-d', $self->connstr($db) ],
			'>', \$stdout, '2>', \$stderr);
		die "pg_dump failed: $stderr" unless $ok;
		return $stdout;
	};
}

$node->safe_psql('postgres', "CREATE DATABASE fresh");
$node->safe_psql('fresh', "CREATE EXTENSION authctx");
is($node->safe_psql('fresh', "SELECT extversion FROM pg_extension WHERE extname = 'authctx'"),
	$current, 'a fresh install is at the current version');
my $fresh_schema = schema_of('fresh');

for my $from (@from)
{
	# ---------------------------------------------------------------- (a)
	my $db = "schema_$from" =~ s/\./_/gr;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION authctx VERSION '$from'");
	$node->safe_psql($db, "ALTER EXTENSION authctx UPDATE");
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'authctx'"),
		$current, "$from: ALTER EXTENSION authctx UPDATE reaches $current");
	my $up_schema = schema_of($db);
	my $same = $up_schema eq $fresh_schema;
	ok($same, "$from: the updated schema equals a fresh install of $current");
	if (!$same)
	{
		my $dir = PostgreSQL::Test::Utils::tempdir();
		open my $fa, '>', "$dir/fresh.sql" or die;
		print $fa $fresh_schema;
		close $fa;
		open my $fb, '>', "$dir/updated.sql" or die;
		print $fb $up_schema;
		close $fb;
		my ($out, $err);
		IPC::Run::run([ 'diff', '-u', "$dir/fresh.sql", "$dir/updated.sql" ], '>', \$out, '2>', \$err);
		diag(substr($out, 0, 6000));
	}

	# ---------------------------------------------------------------- (b), (c)
	$db = "data_$from" =~ s/\./_/gr;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, qq{
	  CREATE EXTENSION authctx VERSION '$from';
	  DO \$\$ BEGIN
	    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN
	      CREATE ROLE app LOGIN IN ROLE authctx_app;
	    END IF;
	  END \$\$;
	  CREATE TABLE notes (id serial PRIMARY KEY, tenant_id uuid NOT NULL, body text);
	  SELECT authctx.enable_tenant_isolation('notes');
	  GRANT SELECT, INSERT ON notes TO app;
	  GRANT USAGE ON SEQUENCE notes_id_seq TO app;
	  SELECT authctx.create_tenant('acme');
	  SELECT authctx.create_tenant('globex');
	  SELECT authctx.add_member('acme', authctx.create_user('alice\@acme.test'));
	  SELECT authctx.add_member('globex', authctx.create_user('bob\@globex.test'));
	  SELECT authctx.set_password(id, 'alice password 1') FROM authctx.users WHERE email = 'alice\@acme.test';
	  CREATE TABLE toks (name text PRIMARY KEY, t text);
	  GRANT SELECT ON toks TO app;
	  INSERT INTO toks SELECT 'alice', authctx.create_session(id) FROM authctx.users WHERE email = 'alice\@acme.test';
	  INSERT INTO toks SELECT 'bob', authctx.create_session(id) FROM authctx.users WHERE email = 'bob\@globex.test';
	  INSERT INTO toks SELECT 'revoked', authctx.create_session(id) FROM authctx.users WHERE email = 'bob\@globex.test';
	  SELECT authctx.revoke_session(authctx._token_id(t::authctx.token)) FROM toks WHERE name = 'revoked';
	  INSERT INTO toks SELECT 'key', authctx.create_api_key(id, 'acme', 'ci', '{notes:read}') FROM authctx.users WHERE email = 'alice\@acme.test';
	  INSERT INTO toks SELECT 'refresh', (authctx.login('alice\@acme.test', 'alice password 1')).refresh_token;
	});
	# (the library refuses auth_begin until the update: the rows go in as
	# the superuser, who bypasses the policy)
	$node->safe_psql($db, q{
	  INSERT INTO notes (tenant_id, body)
	  SELECT t.id, b FROM authctx.tenants t, unnest('{a1,a2}'::text[]) b WHERE t.slug = 'acme';
	  INSERT INTO notes (tenant_id, body) SELECT t.id, 'b1' FROM authctx.tenants t WHERE t.slug = 'globex';
	});

	my $counts = q{SELECT (SELECT count(*) FROM authctx.tenants), (SELECT count(*) FROM authctx.users),
	  (SELECT count(*) FROM authctx.memberships), (SELECT count(*) FROM authctx.password_credentials),
	  (SELECT count(*) FROM authctx.sessions), (SELECT count(*) FROM authctx.refresh_tokens),
	  (SELECT count(*) FROM authctx.api_keys), (SELECT count(*) FROM authctx.audit_log)};
	my $before = $node->safe_psql($db, $counts);

	# (c) the current library, the tables still at $from
	my ($rc, $out, $err) = $node->psql($db, q{SELECT (auth_begin(t)).role FROM toks WHERE name = 'alice'},
		extra_params => [ '-U', 'app' ]);
	isnt($rc, 0, "$from: before the update, auth_begin refuses");
	like($err, qr/ALTER EXTENSION authctx UPDATE/, "$from: and says to run ALTER EXTENSION authctx UPDATE");

	$node->safe_psql($db, "ALTER EXTENSION authctx UPDATE");
	is($node->safe_psql($db, $counts), $before, "$from: every row is still there after the update");

	my $as_app = sub { $node->psql($db, $_[0], extra_params => [ '-U', 'app' ]) };
	($rc, $out, $err) = $as_app->(q{SELECT (auth_begin(t)).role FROM toks WHERE name = 'alice'});
	is("$rc|$out", "0|member", "$from: a session issued before the update authenticates");
	($rc, $out, $err) = $as_app->(q{BEGIN; SELECT (auth_begin(t)).user_id IS NOT NULL FROM toks WHERE name = 'key';
	  SELECT authctx.has_scope('notes:read'), authctx.has_scope('notes:write'); COMMIT;});
	is("$rc|$out", "0|t\nt|f", "$from: an API key issued before the update authenticates, with its scopes");
	($rc, $out, $err) = $as_app->(q{SELECT auth_begin(t) FROM toks WHERE name = 'revoked'});
	like($err, qr/authentication failed/, "$from: a session revoked before the update stays refused");
	($rc, $out, $err) = $as_app->(q{SELECT (authctx.refresh(t)).session_id IS NOT NULL FROM toks WHERE name = 'refresh'});
	is("$rc|$out", "0|t", "$from: a refresh token issued before the update rotates");
	($rc, $out, $err) = $as_app->(q{SELECT (authctx.login('alice@acme.test', 'alice password 1')).session_id IS NOT NULL});
	is("$rc|$out", "0|t", "$from: a password set before the update logs in");
	($rc, $out, $err) = $as_app->(q{BEGIN; SELECT (auth_begin(t)).user_id IS NOT NULL FROM toks WHERE name = 'bob';
	  SELECT string_agg(body, ',' ORDER BY body) FROM notes; COMMIT;});
	is("$rc|$out", "0|t\nb1", "$from: isolation holds after the update (bob sees his tenant's rows only)");
	($rc, $out, $err) = $as_app->(q{SELECT count(*) FROM notes});
	is("$rc|$out", "0|0", "$from: and no context sees no rows");
	# functions added after $from work on the data it wrote
	($rc, $out, $err) = $as_app->(q{BEGIN; SELECT (auth_begin(t)).user_id IS NOT NULL FROM toks WHERE name = 'alice';
	  SELECT string_agg(slug || ':' || role, ',') FROM authctx.my_tenants(); COMMIT;});
	is("$rc|$out", "0|t\nacme:member", "$from: my_tenants lists a user's memberships made before the update");
	is($node->safe_psql($db, q{SELECT string_agg(slug, ',' ORDER BY slug) FROM authctx.list_tenants()}),
		'acme,globex', "$from: list_tenants lists the tenants made before the update");
}

$node->stop;
done_testing();
