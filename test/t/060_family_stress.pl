# Issue 18, point 4: one lock order for sessions and refresh tokens.
# Hundreds of pairs of simultaneous calls on one login family each -- a
# refresh of its token against a logout, a revoke_session, a
# revoke_user_sessions or a second refresh of the same token (a reuse) --
# end with no deadlock (40P01), no other unexpected error, and every family
# revoked, in bounded time, with and without preloading.
#
# Each pair of pgbench clients works through the families in lockstep:
# both sides announce their round (st_arrive, committed), wait for the
# other side to announce it too (st_wait), then fire at the same family.
# Every call's SQLSTATE (or 'ok') is recorded in st_result.
# AUTHCTX_STRESS_ROUNDS sets the rounds per pair (4 pairs; default 75, so
# 300 families per mode).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);

my $pairs = 4;
my $rounds = $ENV{AUTHCTX_STRESS_ROUNDS} || 75;
my $families = $pairs * $rounds;

sub stress
{
	my ($mode) = @_;
	my $node = PostgreSQL::Test::Cluster->new("stress_$mode");
	$node->init;
	$node->append_conf('postgresql.conf', join("\n",
		($mode eq 'preload' ? "shared_preload_libraries = 'authctx'" : ()),
		'max_worker_processes = 24',
		'max_connections = 40',
		'authctx.cleanup_interval = 0',
		'fsync = off',
		'synchronous_commit = off',
		'deadlock_timeout = 100ms',
		''));
	$node->start;
	$node->safe_psql('postgres', qq{
	  CREATE EXTENSION authctx;
	  CREATE TABLE st_fam (i int PRIMARY KEY, user_id uuid, stok text, rtok text, session_id uuid);
	  CREATE TABLE st_step (pair int, side int, n int NOT NULL DEFAULT 0, PRIMARY KEY (pair, side));
	  INSERT INTO st_step SELECT p, s, 0 FROM generate_series(0, $pairs - 1) p, generate_series(0, 1) s;
	  CREATE TABLE st_result (i int, side int, op text, sqlstate text);

	  -- one user and one login family per pair of calls (issued as login
	  -- does once the password is verified: no argon2 in the setup)
	  DO \$\$ DECLARE u uuid; r authctx.login_result; BEGIN
	    FOR i IN 1 .. $families LOOP
	      u := authctx.create_user(format('stress-%s\@example.com', i));
	      r := authctx._issue_session(u, NULL, 'password', '{}');
	      INSERT INTO st_fam VALUES (i, u, r.session_token::text, r.refresh_token::text, r.session_id);
	    END LOOP;
	  END \$\$;

	  CREATE FUNCTION st_arrive(p int, s int) RETURNS int LANGUAGE sql
	    AS \$\$ UPDATE st_step SET n = n + 1 WHERE pair = p AND side = s RETURNING n \$\$;
	  -- wait (at most 10 s) until the other side has announced this round;
	  -- the family of this round, or 0 past the last one
	  CREATE FUNCTION st_wait(p int, s int) RETURNS int LANGUAGE plpgsql AS \$\$
	  DECLARE mine int; theirs int; deadline timestamptz := clock_timestamp() + interval '10 s';
	  BEGIN
	    SELECT n INTO mine FROM st_step WHERE pair = p AND side = s;
	    LOOP
	      SELECT n INTO theirs FROM st_step WHERE pair = p AND side = 1 - s;
	      EXIT WHEN theirs >= mine OR clock_timestamp() > deadline;
	      PERFORM pg_sleep(0.0005);
	    END LOOP;
	    RETURN CASE WHEN mine <= $rounds THEN (mine - 1) * $pairs + p + 1 ELSE 0 END;
	  END \$\$;
	  -- side 0 refreshes; side 1 logs out, revokes the session, revokes the
	  -- user's sessions, or refreshes the same token (one of the two is then
	  -- a reuse), by turns
	  CREATE FUNCTION st_op(fam int, s int) RETURNS text LANGUAGE plpgsql AS \$\$
	  DECLARE f st_fam; op text;
	  BEGIN
	    IF fam = 0 THEN RETURN 'idle'; END IF;
	    SELECT * INTO f FROM st_fam WHERE i = fam;
	    op := CASE WHEN s = 0 THEN 'refresh'
	               ELSE (ARRAY['logout', 'revoke_session', 'revoke_user_sessions', 'reuse'])[fam % 4 + 1] END;
	    BEGIN
	      CASE op
	        WHEN 'refresh', 'reuse' THEN PERFORM authctx.refresh(f.rtok);
	        WHEN 'logout' THEN PERFORM authctx.logout(f.stok);
	        WHEN 'revoke_session' THEN PERFORM authctx.revoke_session(f.session_id);
	        WHEN 'revoke_user_sessions' THEN PERFORM authctx.revoke_user_sessions(f.user_id);
	      END CASE;
	      INSERT INTO st_result VALUES (fam, s, op, 'ok');
	    EXCEPTION WHEN OTHERS THEN
	      INSERT INTO st_result VALUES (fam, s, op, SQLSTATE);
	    END;
	    RETURN op;
	  END \$\$;
	});

	my $dir = PostgreSQL::Test::Utils::tempdir;
	my $script = "$dir/pair.sql";
	PostgreSQL::Test::Utils::append_to_file($script, join("\n",
		'\set pair :client_id / 2',
		'\set side :client_id % 2',
		'SELECT st_arrive(:pair, :side);',
		'SELECT st_wait(:pair, :side) AS fam \gset',
		'SELECT st_op(:fam, :side);', ''));

	my $start = time;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'pgbench', '-n', '-c', 2 * $pairs, '-j', 2 * $pairs, '-t', $rounds,
		'-f', $script, '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(600));
	my $took = time - $start;
	ok($ok, "$mode: pgbench ran every pair") or diag("$out\n$err");
	cmp_ok($took, '<', 300, "$mode: $families pairs in bounded time");
	note(sprintf('%s: %d pairs in %.1f s', $mode, $families, $took));

	is($node->safe_psql('postgres', q{SELECT count(*) FROM st_result}), 2 * $families,
		"$mode: every call of every pair recorded");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM st_result WHERE sqlstate = '40P01'}), '0',
		"$mode: no deadlock");
	is($node->safe_psql('postgres', q{
	  SELECT coalesce(string_agg(DISTINCT op || ':' || sqlstate, ', '), 'none') FROM st_result
	   WHERE sqlstate NOT IN ('ok', '28000')}), 'none',
		"$mode: no error but 28000 (a refresh of a revoked or reused token)");
	# a family is over when no session of it passes auth_begin's checks and
	# no refresh token of it can be spent
	is($node->safe_psql('postgres', q{
	  SELECT count(*) FROM st_fam f
	   WHERE EXISTS (SELECT 1 FROM authctx.refresh_tokens r JOIN authctx.users u ON u.id = r.user_id
	                  WHERE r.user_id = f.user_id AND r.revoked_at IS NULL AND r.spent_at IS NULL
	                    AND NOT authctx._revoked_by_user(r.created_at, r.family_id,
	                                                     u.sessions_revoked_before, u.sessions_revoked_except))
	      OR EXISTS (SELECT 1 FROM authctx.sessions s JOIN authctx.users u ON u.id = s.user_id
	                  WHERE s.user_id = f.user_id AND s.revoked_at IS NULL
	                    AND NOT authctx._revoked_by_user(s.created_at, s.family_id,
	                                                     u.sessions_revoked_before, u.sessions_revoked_except))}),
		'0', "$mode: every family revoked");
	# the reuse pairs: exactly one of the two refreshes won
	is($node->safe_psql('postgres', q{
	  SELECT count(*) FROM (SELECT i FROM st_result WHERE i % 4 = 3 AND sqlstate = 'ok'
	                         GROUP BY i HAVING count(*) <> 1) x}), '0',
		"$mode: of two refreshes of one token exactly one wins");
	is($node->safe_psql('postgres', q{
	  SELECT count(*) FROM st_fam f WHERE f.i % 4 = 3
	     AND NOT EXISTS (SELECT 1 FROM authctx.audit_log a
	                      WHERE a.event = 'refresh_reuse' AND a.user_id = f.user_id)}), '0',
		"$mode: and every reuse was audited");
	$node->stop;
}

stress('preload');
stress('nopreload');
done_testing();
