# A hostile database owner against authctx's background workers (issue 10,
# item 2).  The owner of a database where a superuser installed authctx is
# not a superuser, but controls the database's settings (ALTER DATABASE ...
# SET) and may create objects.  Every worker that connects to the database
# must run the same whatever the owner stored: no code of the owner's runs
# in it, no privilege changes, and every record is written as usual.
#
# The owner plants a type (domain) named text and one named jsonb whose
# checks call its function, and an = operator, then puts its schema first
# in the database's search_path: on 0.1.0 the next failed login made the
# worker run that function as the bootstrap superuser.  Then it stores every
# other setting it can (role, session_authorization, read-only and
# isolation defaults, timeouts, string parsing, plpgsql checks, durability,
# time zone and styles, parallelism...), and a superuser stores a
# search_path for the bootstrap superuser in that database (which the owner
# cannot).  After each step every kind of worker task runs: a failed login
# (login_failed), a refresh token reused (refresh_reuse), a failed passkey
# login (webauthn_failed), admin_begin (audit), a last-seen batch, and
# (preloaded) a cleanup run; in both preload modes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Our own sessions must not be subject to the owner's settings either.
$ENV{PGOPTIONS} = join(' ',
	'-c search_path=pg_catalog,public', '-c role=none',
	'-c idle_session_timeout=0', '-c idle_in_transaction_session_timeout=0',
	'-c statement_timeout=0', '-c lock_timeout=0',
	'-c default_transaction_read_only=off', '-c exit_on_error=off',
	'-c standard_conforming_strings=on', '-c client_min_messages=warning',
	'-c force_parallel_mode=off', '-c plpgsql.extra_errors=none',
	'-c plpgsql.extra_warnings=none');

# What the owner does first: its objects, and its schema first in the path.
my $plant = q{
CREATE SCHEMA evil;
CREATE TABLE evil.ran (at timestamptz DEFAULT clock_timestamp(), who name, pid int);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT, SELECT ON evil.ran TO PUBLIC;
CREATE FUNCTION evil.f(text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  INSERT INTO evil.ran (who, pid) VALUES (current_user, pg_backend_pid());
  RAISE WARNING 'EVIL_%_RAN as %', 'F', current_user;
  BEGIN
    EXECUTE 'ALTER ROLE evil SUPERUSER';
    EXECUTE 'GRANT pg_read_server_files TO evil';
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RETURN true;
END $f$;
CREATE FUNCTION evil.eq(name, name) RETURNS boolean LANGUAGE sql
  AS $f$ SELECT evil.f($1::pg_catalog.text) AND $1 OPERATOR(pg_catalog.=) $2 $f$;
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = evil.eq);
CREATE DOMAIN evil.text AS pg_catalog.text CHECK (evil.f(VALUE));
CREATE DOMAIN evil.jsonb AS pg_catalog.jsonb CHECK (evil.f(VALUE::pg_catalog.text));
ALTER DATABASE victim SET search_path = evil, pg_catalog;
};

# Then everything else a non-superuser owner can store on PostgreSQL 15
# (plpgsql's settings once plpgsql is loaded in its session).
my $settings = q{
DO $d$BEGIN END$d$;
ALTER DATABASE victim SET role = evil;
ALTER DATABASE victim SET session_authorization = evil;
ALTER DATABASE victim SET default_transaction_read_only = on;
ALTER DATABASE victim SET default_transaction_isolation = serializable;
ALTER DATABASE victim SET transaction_read_only = on;
ALTER DATABASE victim SET statement_timeout = 1;
ALTER DATABASE victim SET lock_timeout = 1;
ALTER DATABASE victim SET idle_in_transaction_session_timeout = 1;
ALTER DATABASE victim SET idle_session_timeout = 1;
ALTER DATABASE victim SET check_function_bodies = off;
ALTER DATABASE victim SET standard_conforming_strings = off;
ALTER DATABASE victim SET DateStyle = 'SQL, DMY';
ALTER DATABASE victim SET TimeZone = 'Pacific/Chatham';
ALTER DATABASE victim SET IntervalStyle = sql_standard;
ALTER DATABASE victim SET temp_tablespaces = pg_default;
ALTER DATABASE victim SET default_tablespace = pg_default;
ALTER DATABASE victim SET plpgsql.extra_errors = 'all';
ALTER DATABASE victim SET plpgsql.extra_warnings = 'all';
ALTER DATABASE victim SET plpgsql.check_asserts = off;
ALTER DATABASE victim SET plpgsql.print_strict_params = on;
ALTER DATABASE victim SET row_security = off;
ALTER DATABASE victim SET synchronous_commit = off;
ALTER DATABASE victim SET bytea_output = escape;
ALTER DATABASE victim SET extra_float_digits = -15;
ALTER DATABASE victim SET transform_null_equals = on;
ALTER DATABASE victim SET array_nulls = off;
ALTER DATABASE victim SET exit_on_error = on;
ALTER DATABASE victim SET force_parallel_mode = on;
ALTER DATABASE victim SET max_parallel_workers_per_gather = 8;
ALTER DATABASE victim SET work_mem = 64;
ALTER DATABASE victim SET enable_indexscan = off;
ALTER DATABASE victim SET jit = on;
};

my $user = q{(SELECT u.id FROM authctx.users u WHERE u.email = 'victim@example.com')};

# Every kind of worker task, each record checked.
sub run_tasks
{
	my ($node, $preloaded, $phase) = @_;
	my $q = sub { return $node->safe_psql('victim', $_[0]); };
	my $app = sub { return $node->psql('victim', $_[0], extra_params => [ '-U', 'wapp' ]); };
	my ($rc, $out, $err, $before);

	# a failed login: counted and audited
	$before = $q->(q{SELECT count(*) FROM authctx.audit_log WHERE event = 'login_failed'
	                   AND detail ->> 'method' = 'password'});
	($rc, $out, $err) = $app->(q{SELECT authctx.login('victim@example.com', 'wrong password')});
	like($err, qr/ERROR:  login failed/, "$phase: a failed login is refused");
	is($q->(qq{SELECT (SELECT count(*) - $before FROM authctx.audit_log WHERE event = 'login_failed'
	                      AND detail ->> 'method' = 'password')
	             || '/' || (SELECT t.failures FROM authctx.login_throttle t WHERE t.user_id = $user)}),
		'1/1', "$phase: login_failed written and the failure counted");

	# a reused refresh token: its family revoked, refresh_reuse audited
	my $pair = $q->(q{SELECT r.refresh_token FROM authctx.login('victim@example.com', 'victim password 1') r});
	$app->(qq{SELECT authctx.refresh('$pair')});
	($rc, $out, $err) = $app->(qq{SELECT authctx.refresh('$pair')});
	like($err, qr/ERROR:  invalid token/, "$phase: a reused refresh token is refused");
	is($q->(qq{SELECT count(*) FILTER (WHERE s.revoked_at IS NULL) || '/' ||
	                  (SELECT count(*) FROM authctx.audit_log a WHERE a.event = 'refresh_reuse'
	                      AND a.detail ->> 'family_id' = f.family_id::text)
	             FROM (SELECT r.family_id FROM authctx.refresh_tokens r
	                    WHERE r.id = authctx._token_id('$pair'::authctx.token)) f
	             JOIN authctx.sessions s ON s.family_id = f.family_id
	            GROUP BY f.family_id}),
		'0/1', "$phase: refresh_reuse revoked the family and was audited");

	# a failed passkey login: the challenge spent, login_failed audited
	$before = $q->(q{SELECT count(*) FROM authctx.audit_log WHERE event = 'login_failed'
	                   AND detail ->> 'method' = 'webauthn'});
	my $chal = $q->(q{INSERT INTO authctx.webauthn_challenges (challenge, expires_at)
	                  VALUES (decode(md5(random()::text) || md5(clock_timestamp()::text), 'hex'),
	                          clock_timestamp() + interval '1 hour')
	                  RETURNING encode(challenge, 'hex')});
	($rc, $out, $err) = $app->(qq{
	  SELECT authctx.login_webauthn('\\x0102'::bytea, '\\x00'::bytea,
	    convert_to('{"type":"webauthn.get","origin":"https://example.com","challenge":"'
	               || rtrim(translate(encode('\\x$chal'::bytea, 'base64'), '+/', '-_'), '=') || '"}', 'UTF8'),
	    '\\x00'::bytea, 'example.com', 'https://example.com')});
	like($err, qr/ERROR:  login failed/, "$phase: a failed passkey login is refused");
	is($q->(qq{SELECT (SELECT count(*) FROM authctx.webauthn_challenges WHERE challenge = '\\x$chal'::bytea)
	             || '/' || (SELECT count(*) - $before FROM authctx.audit_log WHERE event = 'login_failed'
	                          AND detail ->> 'method' = 'webauthn')}),
		'0/1', "$phase: webauthn_failed spent the challenge and was audited");

	# admin_begin: admin_bypass audited
	$before = $q->(q{SELECT count(*) FROM authctx.audit_log WHERE event = 'admin_bypass'});
	($rc, $out, $err) = $node->psql('victim',
		q{BEGIN; SELECT authctx.admin_begin('hostile owner test'); COMMIT;},
		extra_params => [ '-U', 'wadmin' ]);
	is($rc, 0, "$phase: admin_begin works");
	is($q->(qq{SELECT count(*) - $before FROM authctx.audit_log WHERE event = 'admin_bypass'
	             AND detail ->> 'reason' = 'hostile owner test'}),
		'1', "$phase: admin_bypass audited");

	# a last-seen batch (preloaded: the shared queue's worker; not: the
	# backend's own list, handed over at once for the first note)
	my $tok = $q->(qq{SELECT authctx.create_session($user)});
	$q->(qq{UPDATE authctx.sessions SET last_seen_at = clock_timestamp() - interval '10 minutes'
	         WHERE id = authctx._token_id('$tok'::authctx.token)});
	($rc, $out, $err) = $app->(qq{BEGIN READ ONLY; SELECT (public.auth_begin('$tok')).auth_method; COMMIT;});
	is($out, 'session', "$phase: auth_begin accepts the session");
	ok($node->poll_query_until('victim',
			qq{SELECT last_seen_at > clock_timestamp() - interval '1 minute' FROM authctx.sessions
			    WHERE id = authctx._token_id('$tok'::authctx.token)}),
		"$phase: last-seen time written by the worker");

	# a cleanup run (preloaded)
	if ($preloaded)
	{
		$q->(qq{INSERT INTO authctx.sessions (id, user_id, family_id, verifier, created_at, last_seen_at, expires_at)
		        SELECT gen_random_uuid(), $user, gen_random_uuid(), '\\x00'::bytea, now() - interval '3 days',
		               now() - interval '3 days', now() - interval '2 days'
		          FROM generate_series(1, 5)});
		ok($node->poll_query_until('victim',
				q{SELECT count(*) = 0 FROM authctx.sessions WHERE expires_at < now() - interval '1 day'}),
			"$phase: cleanup removed the expired sessions");
	}

	# and the owner gained nothing
	is($q->(q{SELECT count(*) FROM evil.ran}), '0', "$phase: the owner's function never ran");
	is($q->(q{SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication
	            FROM pg_authid WHERE rolname = 'evil'}),
		'f', "$phase: the owner has no new attribute");
	is($q->(q{SELECT count(*) FROM pg_auth_members WHERE member = 'evil'::regrole}),
		'0', "$phase: nor a new role membership");
	unlike(slurp_file($node->logfile), qr/EVIL_F_RAN/, "$phase: nor a trace in the log");
}

for my $preloaded (1, 0)
{
	my $mode = $preloaded ? 'preloaded' : 'not preloaded';
	my $node = PostgreSQL::Test::Cluster->new($preloaded ? 'hostile_preload' : 'hostile_nopreload');
	$node->init;
	$node->append_conf('postgresql.conf', qq{
max_worker_processes = 16
authctx.password_memlimit = 8MB
authctx.password_opslimit = 2
authctx.last_seen_interval = 10s
});
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
authctx.cleanup_interval = 1s
authctx.cleanup_database = 'victim'
}) if $preloaded;
	$node->start;
	my $super = $node->safe_psql('postgres', q{SELECT rolname FROM pg_authid WHERE oid = 10});

	$node->safe_psql('postgres', q{CREATE ROLE evil LOGIN});
	$node->safe_psql('postgres', q{CREATE DATABASE victim OWNER evil});
	$node->safe_psql('victim', q{
	  CREATE EXTENSION authctx;
	  CREATE ROLE wapp LOGIN IN ROLE authctx_app;
	  CREATE ROLE wadmin LOGIN IN ROLE authctx_admin;
	  SELECT authctx.set_password(authctx.create_user('victim@example.com'), 'victim password 1');
	});

	$node->safe_psql('victim', $plant, extra_params => [ '-U', 'evil' ]);
	run_tasks($node, $preloaded, "$mode, hostile search_path");

	$node->safe_psql('victim', $settings, extra_params => [ '-U', 'evil' ]);
	is($node->safe_psql('victim', q{SELECT count(*) FROM pg_db_role_setting s, unnest(s.setconfig)
	                                 WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = 'victim')}),
		scalar(() = "$plant$settings" =~ /ALTER DATABASE victim SET/g), "$mode: the owner stored its settings");
	# the bootstrap superuser's own settings are out of the owner's reach ...
	my ($rc, $out, $err) = $node->psql('victim',
		qq{ALTER ROLE "$super" IN DATABASE victim SET search_path = evil, pg_catalog},
		extra_params => [ '-U', 'evil' ]);
	like($err, qr/must be superuser to alter superusers/,
		"$mode: the owner cannot store settings for the role the workers connect as");
	# ... and pinned all the same when a superuser stores some
	$node->safe_psql('victim',
		qq{ALTER ROLE "$super" IN DATABASE victim SET search_path = evil, pg_catalog;
		   ALTER ROLE "$super" IN DATABASE victim SET default_transaction_read_only = on});
	run_tasks($node, $preloaded, "$mode, every hostile setting");

	$node->stop;
}

done_testing();
