# Backups and restores (pg_dump, pg_restore, psql).  Checked:
#   (a) every table and sequence of schema authctx is registered for pg_dump
#       (pg_extension_config_dump) or on the "not dumped" list below, with
#       its reason, so that a table added later cannot be forgotten;
#   (b) a dump in every format (plain, custom, directory, tar) restores
#       with psql -v ON_ERROR_STOP=1 --single-transaction or pg_restore
#       --single-transaction --exit-on-error into a fresh database, with
#       the same rows in every table (the not-dumped ones excepted) and the
#       same sequence positions; then sessions and API keys issued before
#       the dump authenticate, revoked ones and a disabled user's stay
#       refused, a refresh token rotates, a password logs in (and its audit
#       row gets a new id), a passkey logs in, an OAuth link resolves,
#       isolation holds;
#   (c) into another cluster (not preloaded, same authctx.token_pepper):
#       without the application's roles the restore fails on the first
#       GRANT naming one and leaves nothing behind; with that role made by
#       hand it works, CREATE EXTENSION creating the authctx_* roles (and
#       the dump's GRANTs to them applying); after pg_dumpall
#       --globals-only it works in full, reusing them; another pepper
#       refuses every token;
#   (d) the data version guard: a dump whose authctx rows are of another
#       version than the installed one fails with 55000 and a hint, first
#       and leaving nothing behind; restoring into a database where the
#       extension was created beforehand at the dump's version works;
#   (e) a database created at 0.1.0: its dump holds no authctx row (0.1.0
#       registered nothing, which is why the README says to update first);
#       after ALTER EXTENSION authctx UPDATE its dump restores everything
#       where the current version is installed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Tables and sequences of schema authctx that pg_dump deliberately does not
# keep, each with its reason (docs/operations.md says the same).
my %not_dumped = (
	# single use, valid for minutes: a restored challenge would be unspent
	# again, even one spent after the backup (replay of a captured assertion)
	'authctx.webauthn_challenges' => 'spent or soon expired WebAuthn challenges',
	# keys only the per-account advisory locks of logins, which live for one
	# transaction; every database makes its own at CREATE EXTENSION
	'authctx.database_secret' => 'the per-database key of the login account locks',
	# single use, valid for minutes to days: a restored token would be
	# unspent again (replay of a spent reset link or invitation)
	'authctx.one_time_tokens' => 'single-use email links and invitations',
);

my $pepper = 'backup test pepper 0123456789';
my $common = qq{
max_worker_processes = 16
authctx.password_memlimit = 8MB
authctx.password_opslimit = 2
authctx.cleanup_interval = 0
authctx.token_pepper = '$pepper'
};
my $src = PostgreSQL::Test::Cluster->new('backup_src');
$src->init;
$src->append_conf('postgresql.conf', "shared_preload_libraries = 'authctx'\n$common");
$src->start;
my $dir = PostgreSQL::Test::Utils::tempdir();
my ($current) = slurp_file("$ENV{TESTDIR}/authctx.control") =~ /default_version\s*=\s*'([^']+)'/;

# A passkey of alice and an assertion signed by it, from the fixtures of
# sql/webauthn.sql (test/fixtures/webauthn/gen.py): Ed25519, counter 3,
# over challenge 21.
my %wa = (
	cose => '\xa401010327200621582084bbdda6b95ebe5dd5a69c0f685c2b1e517bdb2f73228a8268f80b4567becb76',
	cred => '\x637265642d616c696365',
	ad => '\xa379a6f6eeafb9a55e378c118034e2751e682fab9f2d30ab13d2125586ce19470500000003',
	cd => '\x7b2274797065223a22776562617574686e2e676574222c226368616c6c656e6765223a22496f4a7a46355f4b69594f6c7675496939384176335541694e3962656c726278584773756f387469774d63222c226f726967696e223a2268747470733a2f2f6578616d706c652e636f6d222c2263726f73734f726967696e223a66616c73657d',
	sig => '\xdd95a3b0817c085c082909b2c889f6087888de58b66adcbaee1edd0e97a2c1695512f72be97baa180a5ce560362ec603c92c3933ba0e48c7d84ac2cca840c203',
	challenge => '\x228273179fca8983a5bee222f7c02fdd402237d6de96b6f15c6b2ea3cb62c0c7');

# Fill database $db (the extension already created) as an application
# would: two tenants, users with passwords, an OAuth link, a passkey,
# sessions, API keys (live and revoked), a refresh token, a disabled user,
# a failed login (lockout row), an unspent WebAuthn challenge, an isolated
# table with rows.  Tokens go into table toks.
sub populate
{
	my ($node, $db) = @_;
	$node->safe_psql($db, qq{
	  DO \$\$ BEGIN
	    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN
	      CREATE ROLE app LOGIN IN ROLE authctx_app;
	    END IF;
	  END \$\$;
	  CREATE TABLE notes (id serial PRIMARY KEY, tenant_id uuid NOT NULL, body text);
	  SELECT authctx.enable_tenant_isolation('notes');
	  GRANT SELECT, INSERT ON notes TO app;
	  GRANT SELECT ON notes TO authctx_manager;
	  GRANT USAGE ON SEQUENCE notes_id_seq TO app;
	  CREATE TABLE toks (name text PRIMARY KEY, t text);
	  GRANT SELECT ON toks TO app;
	  SELECT authctx.create_tenant('acme', 'Acme');
	  SELECT authctx.create_tenant('globex');
	  SELECT authctx.add_member('acme', authctx.create_user('alice\@acme.test', 'Alice'));
	  SELECT authctx.add_member('globex', authctx.create_user('bob\@globex.test'));
	  SELECT authctx.add_member('acme', authctx.create_user('carol\@acme.test'), 'owner');
	  SELECT authctx.set_password(id, 'alice password 1') FROM authctx.users WHERE email = 'alice\@acme.test';
	  SELECT authctx.link_identity(id, 'https://idp.example', 'alice-sub') FROM authctx.users WHERE email = 'alice\@acme.test';
	  SELECT authctx.add_webauthn_credential(id, '$wa{cred}'::bytea, '$wa{cose}'::bytea, 0, 'alice laptop')
	    FROM authctx.users WHERE email = 'alice\@acme.test';
	  INSERT INTO toks SELECT 'alice', authctx.create_session(id) FROM authctx.users WHERE email = 'alice\@acme.test';
	  INSERT INTO toks SELECT 'bob', authctx.create_session(id) FROM authctx.users WHERE email = 'bob\@globex.test';
	  INSERT INTO toks SELECT 'revoked', authctx.create_session(id) FROM authctx.users WHERE email = 'bob\@globex.test';
	  SELECT authctx.revoke_session(authctx._token_id(t::authctx.token)) FROM toks WHERE name = 'revoked';
	  INSERT INTO toks SELECT 'key', authctx.create_api_key(id, 'acme', 'ci', '{notes:read}') FROM authctx.users WHERE email = 'alice\@acme.test';
	  INSERT INTO toks SELECT 'revoked_key', authctx.create_api_key(id, 'acme', 'old') FROM authctx.users WHERE email = 'alice\@acme.test';
	  SELECT authctx.revoke_api_key(authctx._token_id(t::authctx.token)) FROM toks WHERE name = 'revoked_key';
	  INSERT INTO toks SELECT 'refresh', (authctx.login('alice\@acme.test', 'alice password 1')).refresh_token;
	  INSERT INTO toks SELECT 'disabled', authctx.create_session(id) FROM authctx.users WHERE email = 'carol\@acme.test';
	  SELECT authctx.disable_user(id) FROM authctx.users WHERE email = 'carol\@acme.test';
	  SELECT authctx.webauthn_challenge();
	  -- test helpers, restored with the rest: what auth_begin says of a
	  -- token (method, role, and an API key's scopes); every row of every
	  -- table of schemas authctx and public but those in skip, and every
	  -- sequence's position, one line per relation with a digest of its rows
	  CREATE FUNCTION try_auth(tok text) RETURNS text LANGUAGE plpgsql AS \$\$
	  DECLARE c authctx.context;
	  BEGIN
	    c := auth_begin(tok);
	    RETURN c.auth_method || ':' || c.role ||
	           CASE WHEN c.auth_method = 'api_key'
	                THEN ':' || authctx.has_scope('notes:read') || ',' || authctx.has_scope('notes:write')
	                ELSE '' END;
	  EXCEPTION WHEN invalid_authorization_specification THEN
	    RETURN 'refused';
	  END \$\$;
	  GRANT EXECUTE ON FUNCTION try_auth(text) TO app;
	  CREATE FUNCTION contents(skip text[]) RETURNS SETOF text LANGUAGE plpgsql
	  SET TimeZone = 'UTC' AS \$\$
	  DECLARE r record; v text;
	  BEGIN
	    FOR r IN SELECT c.oid::regclass::text AS rel, c.relkind FROM pg_class c
	              WHERE c.relnamespace IN ('authctx'::regnamespace, 'public'::regnamespace)
	                AND c.relkind IN ('r', 'p', 'S') AND c.oid::regclass::text <> ALL (skip)
	              ORDER BY 1 LOOP
	      IF r.relkind = 'S' THEN
	        EXECUTE format('SELECT last_value || '' '' || is_called FROM %s', r.rel) INTO v;
	      ELSE
	        EXECUTE format('SELECT count(*) || '' '' || md5(coalesce(string_agg(x::text, ''|'' ORDER BY x::text), '''')) FROM %s x',
	                       r.rel) INTO v;
	      END IF;
	      RETURN NEXT r.rel || ' ' || v;
	    END LOOP;
	  END \$\$;
	  INSERT INTO notes (tenant_id, body)
	  SELECT t.id, b FROM authctx.tenants t, unnest('{a1,a2}'::text[]) b WHERE t.slug = 'acme';
	  INSERT INTO notes (tenant_id, body) SELECT t.id, 'b1' FROM authctx.tenants t WHERE t.slug = 'globex';
	});
	# a failed login: counted (login_throttle) and audited by a worker
	my ($rc, $out, $err) = $node->psql($db, q{SELECT authctx.login('alice@acme.test', 'wrong password')},
		extra_params => [ '-U', 'app' ]);
	die "the failed login did not fail: $err" unless $err =~ /login failed/;
	die "the failed login was not counted"
	  unless $node->safe_psql($db, q{SELECT failures FROM authctx.login_throttle}) eq '1';
}

# Every row of every table of schemas authctx and public (the not-dumped
# ones excepted), and every sequence's position (populate's contents()).
my $skip = '{' . join(',', sort keys %not_dumped) . '}';
sub contents
{
	my ($node, $db) = @_;
	return $node->safe_psql($db, "SELECT contents('$skip')");
}

# Tables and sequences of schema authctx not registered for pg_dump.
sub unregistered
{
	my ($node, $db) = @_;
	return $node->safe_psql($db, q{
	  SELECT coalesce(string_agg(c.oid::regclass::text, ' ' ORDER BY c.oid::regclass::text), '')
	    FROM pg_class c
	   WHERE c.relnamespace = 'authctx'::regnamespace AND c.relkind IN ('r', 'p', 'S')
	     AND c.oid <> ALL (SELECT unnest(e.extconfig) FROM pg_extension e WHERE e.extname = 'authctx')});
}
my $expect_unregistered = join(' ', sort keys %not_dumped);

# A restored database $db of $node: everything works as before the dump.
# $role is the application's login role there.
my $tokens_ok = 'alice=session:member bob=session:member disabled=refused key=api_key:member:true,false '
  . 'refresh=refused revoked=refused revoked_key=refused';
sub check_restored
{
	my ($node, $db, $label, $role) = @_;
	my ($challenges, $max_audit) = split /\n/, $node->safe_psql($db, qq{
	  SELECT count(*) FROM authctx.webauthn_challenges;
	  INSERT INTO authctx.webauthn_challenges (challenge, expires_at)
	  VALUES ('$wa{challenge}', clock_timestamp() + interval '5 minutes');
	  SELECT max(id) FROM authctx.audit_log;});
	is($challenges, '0', "$label: no WebAuthn challenge was restored");

	# as the application, one statement per line "what|result"
	my ($rc, $out, $err) = $node->psql($db, qq{
	  SELECT 'tokens', string_agg(name || '=' || try_auth(t), ' ' ORDER BY name) FROM toks;
	  SELECT 'refresh', (authctx.refresh(t)).session_id IS NOT NULL FROM toks WHERE name = 'refresh';
	  SELECT 'password', (authctx.login('alice\@acme.test', 'alice password 1')).session_id IS NOT NULL;
	  SELECT 'passkey', (authctx.login_webauthn('$wa{cred}', '$wa{ad}', '$wa{cd}', '$wa{sig}',
	                     'example.com', 'https://example.com')).session_id IS NOT NULL;
	  BEGIN;
	  SELECT 'bob', (auth_begin(t)).user_id IS NOT NULL FROM toks WHERE name = 'bob';
	  SELECT 'bob sees', string_agg(body, ',' ORDER BY body) FROM notes;
	  COMMIT;
	  SELECT 'no context sees', count(*) FROM notes;
	}, extra_params => [ '-U', $role ], on_error_stop => 0);
	my %r = map { split /\|/, $_, 2 } split /\n/, $out;
	diag($err) if $err ne '';
	is($r{tokens}, $tokens_ok, "$label: sessions and API keys issued before the dump authenticate "
		. '(role, scopes); revoked ones, a disabled user\'s and refresh tokens are refused');
	is($r{refresh}, 't', "$label: a refresh token issued before the dump rotates");
	is($r{password}, 't', "$label: a password set before the dump logs in");
	is($r{passkey}, 't', "$label: a passkey registered before the dump logs in");
	is("$r{bob}|$r{'bob sees'}|$r{'no context sees'}", 't|b1|0',
		"$label: isolation holds (bob sees his tenant's rows only, no context no rows)");

	is($node->safe_psql($db, qq{
	  SELECT count(*) FROM authctx.audit_log WHERE event = 'login' AND id > $max_audit;
	  SELECT email FROM authctx.users WHERE id = authctx.find_identity('https://idp.example', 'alice-sub')}),
		"2\nalice\@acme.test",
		"$label: the two logins' audit rows follow the restored ones (identity sequence restored); an OAuth link resolves");
}

# Run a client program against $node; returns (ok, stderr).
sub run_cmd
{
	my ($node, @cmd) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	return ($ok, $err);
}

# pg_dump of $db in $format (p, c, d, t) into $file.
sub dump_db
{
	my ($node, $db, $format, $file) = @_;
	my ($ok, $err) = run_cmd($node, 'pg_dump', "-F$format", '-f', $file, '-d', $db);
	die "pg_dump -F$format $db failed: $err" unless $ok;
}

# Restore $file (format $format) into new database $db of $node, in one
# transaction, stopping at the first error; returns (ok, stderr).
sub restore
{
	my ($node, $db, $format, $file, @opts) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	return run_cmd($node, 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose',
		'--single-transaction', '-d', $db, '-f', $file, @opts)
	  if $format eq 'p';
	return run_cmd($node, 'pg_restore', '--single-transaction', '--exit-on-error', '-d', $db, @opts, $file);
}

# ---------------------------------------------------------------- (a)
$src->safe_psql('postgres', 'CREATE DATABASE prod');
$src->safe_psql('prod', 'CREATE EXTENSION authctx');
is(unregistered($src, 'prod'), $expect_unregistered,
	'every table and sequence of schema authctx is registered for pg_dump or listed as not dumped');
is($src->safe_psql('prod', 'SELECT version FROM authctx._data_version'), $current,
	'the data version is the installed version');
populate($src, 'prod');
my $prod = contents($src, 'prod');
like($prod, qr/^authctx\.audit_log_id_seq [1-9]\d* true$/m, 'the source has audit rows');
like($prod, qr/^authctx\.sessions [1-9]\d* /m, 'and sessions');

# ---------------------------------------------------------------- (b)
my %file;
for my $f (qw(p c d t))
{
	$file{$f} = "$dir/prod.$f";
	dump_db($src, 'prod', $f, $file{$f});
}
my %format = (p => 'plain, psql', c => 'custom, pg_restore', d => 'directory, pg_restore', t => 'tar, pg_restore');
for my $f (qw(p c d t))
{
	my ($ok, $err) = restore($src, "r_$f", $f, $file{$f});
	ok($ok, "$format{$f}: the restore succeeds in one transaction, stopping at any error") or diag($err);
	is(contents($src, "r_$f"), $prod, "$format{$f}: every row and sequence position is back");
}
check_restored($src, 'r_p', 'plain dump restored with psql', 'app');

# ---------------------------------------------------------------- (c)
my $dst = PostgreSQL::Test::Cluster->new('backup_dst');
$dst->init;
$dst->append_conf('postgresql.conf', $common);
$dst->start;
is($dst->safe_psql('postgres', q{SELECT count(*) FROM pg_roles WHERE rolname IN ('app', 'authctx_app', 'authctx_manager', 'authctx_admin')}),
	'0', 'another cluster, without any of the roles');

my ($ok, $err) = restore($dst, 'noroles', 'c', $file{c});
ok(!$ok, 'another cluster: a restore without the application role fails');
like($err, qr/role "app" does not exist/, 'naming the missing role');
is($dst->safe_psql('noroles', q{SELECT count(*) FROM pg_extension WHERE extname = 'authctx'}) .
	$dst->safe_psql('noroles', q{SELECT count(*) FROM pg_class WHERE relname = 'notes'}),
	'00', 'and leaves nothing half restored behind');

# the application's role made by hand, the authctx roles not at all: the
# restore's CREATE EXTENSION creates them, and the dump's GRANTs to them
# apply; the application role joins authctx_app by hand too
$dst->safe_psql('postgres', 'CREATE ROLE app LOGIN');
($ok, $err) = restore($dst, 'byhand', 'c', $file{c});
ok($ok, 'another cluster, only the application role made by hand: the restore succeeds') or diag($err);
is($dst->safe_psql('byhand', q{SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'authctx%';
  SELECT has_table_privilege('authctx_manager', 'notes', 'SELECT')}),
	"authctx_admin,authctx_app,authctx_manager\nt", 'CREATE EXTENSION created the authctx roles, the GRANT to one of them applied');
is(contents($dst, 'byhand'), $prod, 'another cluster, roles by hand: every row is back');
$dst->safe_psql('postgres', 'GRANT authctx_app TO app');
my ($rc, $out);
($rc, $out, $err) = $dst->psql('byhand', q{SELECT try_auth(t) FROM toks WHERE name = 'alice'}, extra_params => [ '-U', 'app' ]);
is($out, 'session:member', 'another cluster, roles by hand: a session issued before the dump authenticates');
$dst->safe_psql('postgres', 'DROP DATABASE byhand');
$dst->safe_psql('postgres', 'DROP ROLE app, authctx_admin, authctx_manager, authctx_app');

# the documented order: roles first (pg_dumpall --globals-only), then the
# database; CREATE ROLE of roles that exist already fails harmlessly
($ok, $err) = run_cmd($src, 'pg_dumpall', '--globals-only', '-f', "$dir/globals.sql");
ok($ok, 'pg_dumpall --globals-only') or diag($err);
$dst->psql('postgres', undef, extra_params => [ '-f', "$dir/globals.sql" ], on_error_stop => 0);
is($dst->safe_psql('postgres', q{SELECT pg_has_role('app', 'authctx_app', 'member')}), 't',
	'the globals brought the application role, member of authctx_app');
($ok, $err) = restore($dst, 'withroles', 'c', $file{c});
ok($ok, 'another cluster, roles restored first: the restore succeeds') or diag($err);
is(contents($dst, 'withroles'), $prod, 'another cluster: every row and sequence position is back');
check_restored($dst, 'withroles', 'another cluster, not preloaded', 'app');

# the verifiers are keyed with authctx.token_pepper: another pepper refuses
# every token (and leaves passwords alone)
$dst->safe_psql('postgres', q{ALTER SYSTEM SET authctx.token_pepper = 'another pepper'; SELECT pg_reload_conf()});
($rc, $out, $err) = $dst->psql('withroles', q{SELECT try_auth(t) FROM toks WHERE name = 'bob';
  SELECT (authctx.login('alice@acme.test', 'alice password 1')).session_id IS NOT NULL},
	extra_params => [ '-U', 'app' ]);
is($out, "refused\nt", 'another authctx.token_pepper: tokens issued before the dump are refused, passwords still log in');
$dst->safe_psql('postgres', q{ALTER SYSTEM RESET authctx.token_pepper; SELECT pg_reload_conf()});

# ---------------------------------------------------------------- (d)
my $plain = slurp_file($file{p});
(my $other = $plain) =~ s/^(COPY authctx\._data_version \(version\) FROM stdin;\n)\Q$current\E\n/${1}9.9.9\n/m
  or die 'no data version in the plain dump';
open my $fh, '>', "$dir/other.sql" or die;
print $fh $other;
close $fh;
($ok, $err) = restore($src, 'guard1', 'p', "$dir/other.sql");
ok(!$ok, 'a dump of authctx data of another version: the restore fails');
like($err, qr/ERROR:  55000: the authctx data being restored is of version 9\.9\.9, but authctx \Q$current\E is installed in this database/,
	'with 55000, naming both versions');
like($err, qr/HINT:  .*CREATE EXTENSION authctx VERSION '9\.9\.9'.*ALTER EXTENSION authctx UPDATE/,
	'and a hint that says what to do');
is($src->safe_psql('guard1', q{SELECT count(*) FROM pg_extension WHERE extname = 'authctx'}),
	'0', 'in one transaction, nothing is left behind');
# without --single-transaction, psql stops at the guard: it is the first
# authctx data restored, and the application's data comes after it
$src->safe_psql('postgres', 'CREATE DATABASE guard2');
($ok, $err) = run_cmd($src, 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'guard2', '-f', "$dir/other.sql");
ok(!$ok && $err =~ /of version 9\.9\.9/, 'without one transaction, the restore stops at the guard');
is($src->safe_psql('guard2', q{SELECT (SELECT count(*) FROM authctx.users) + (SELECT count(*) FROM authctx.sessions)
  + (SELECT count(*) FROM authctx.audit_log) + (SELECT count(*) FROM notes)}),
	'0', 'before any other authctx or application row was loaded');

# following the hint: the extension created first at the dump's version
# (here the current one), the dump's CREATE SCHEMA authctx left out of the
# restore list (docs/operations.md shows the same for a plain dump)
($ok, $err) = run_cmd($src, 'pg_restore', '-l', '-f', "$dir/prod.list", $file{c});
my @list = grep { !/ SCHEMA - authctx / } split /\n/, slurp_file("$dir/prod.list");
open $fh, '>', "$dir/noschema.list" or die;
print $fh join("\n", @list), "\n";
close $fh;
$src->safe_psql('postgres', 'CREATE DATABASE precreated_c');
$src->safe_psql('precreated_c', "CREATE EXTENSION authctx VERSION '$current'");
($ok, $err) = run_cmd($src, 'pg_restore', '--single-transaction', '--exit-on-error', '-L', "$dir/noschema.list",
	'-d', 'precreated_c', $file{c});
ok($ok, 'custom dump into a database where the extension was created first: the restore succeeds') or diag($err);
is(contents($src, 'precreated_c'), $prod, 'every row is back');
# into an older version (0.1.0 has no data version table): it stops there,
# before any authctx row
$src->safe_psql('postgres', 'CREATE DATABASE older');
$src->safe_psql('older', "CREATE EXTENSION authctx VERSION '0.1.0'");
($ok, $err) = run_cmd($src, 'pg_restore', '--single-transaction', '--exit-on-error', '-L', "$dir/noschema.list",
	'-d', 'older', $file{c});
ok(!$ok && $err =~ /relation "authctx._data_version" does not exist/,
	'a dump restored where an older version (0.1.0) was created first fails at the data version');
is($src->safe_psql('older', q{SELECT (SELECT count(*) FROM authctx.users) + (SELECT count(*) FROM authctx.sessions)}),
	'0', 'and leaves no authctx row behind');

# ---------------------------------------------------------------- (e)
$src->safe_psql('postgres', 'CREATE DATABASE old');
$src->safe_psql('old', "CREATE EXTENSION authctx VERSION '0.1.0'");
populate($src, 'old');
dump_db($src, 'old', 'p', "$dir/old_0_1_0.sql");
my @copied = slurp_file("$dir/old_0_1_0.sql") =~ /^COPY (\S+)/mg;
is(join(' ', @copied), 'public.notes public.toks',
	'0.1.0: its dump holds the application\'s rows but no authctx row (nothing was registered): update before dumping');
$src->safe_psql('old', 'ALTER EXTENSION authctx UPDATE');
is(unregistered($src, 'old'), $expect_unregistered,
	'0.1.0 updated: every table and sequence is registered or listed as not dumped');
is($src->safe_psql('old', 'SELECT version FROM authctx._data_version'), $current,
	'0.1.0 updated: the data version is the installed version');
my $old = contents($src, 'old');
dump_db($src, 'old', 'c', "$dir/old_updated.c");
($ok, $err) = restore($src, 'old_r2', 'c', "$dir/old_updated.c");
ok($ok, '0.1.0 updated, then dumped: the restore succeeds') or diag($err);
is(contents($src, 'old_r2'), $old, '0.1.0 updated, then dumped: every row and sequence position is back');
check_restored($src, 'old_r2', '0.1.0 updated, then dumped', 'app');

$dst->stop;
$src->stop;
done_testing();
