# Crash safety (preloaded).  A backend killed with SIGKILL in the middle of
# auth_begin, of a login and of a revocation (each held on a lock inside
# the call, so that the kill lands there deterministically); each
# background worker killed the same way: the cleanup worker, the last-seen
# worker, an autonomous writer (a failed login's record) and a last-seen
# writer, the last two held on a lock in the middle of their write; and an
# immediate shutdown while last-seen notes wait in shared memory.  After
# each: the postmaster reinitialised and is up, no committed session,
# revocation or audit row is lost (and what never committed is not there),
# the shared session cache starts empty, is filled again and never serves a
# revoked session, both static workers run again and do their work.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$SIG{PIPE} = 'IGNORE';

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
restart_after_crash = on
max_worker_processes = 16
authctx.password_memlimit = 8MB
authctx.password_opslimit = 2
authctx.cleanup_interval = 1s
authctx.last_seen_interval = 10s
authctx.cache_size = 1000
});
$node->start;
$node->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  CREATE ROLE app LOGIN IN ROLE authctx_app;
  SELECT authctx.create_tenant('acme');
  SELECT authctx.add_member('acme', authctx.create_user('u' || i || '@acme.test')) FROM generate_series(1, 3) i;
  SELECT authctx.set_password(id, 'u1 password 1') FROM authctx.users WHERE email = 'u1@acme.test';
  CREATE TABLE toks (name text PRIMARY KEY, t text);
  GRANT SELECT ON toks TO app;
  INSERT INTO toks SELECT 's' || i, authctx.create_session(u.id)
    FROM generate_series(1, 6) i JOIN authctx.users u ON u.email = 'u' || (1 + i % 3) || '@acme.test';
  INSERT INTO toks SELECT 'k1', authctx.create_api_key(id, 'acme', 'ci') FROM authctx.users WHERE email = 'u2@acme.test';
  SELECT authctx.revoke_session(authctx._token_id(t::authctx.token)) FROM toks WHERE name = 's6';
  -- sessions for the last-seen checks, never looked up before their turn
  -- (so never cached), last seen ten minutes ago: due a note (sliding
  -- last-seen: a tenth of the 1 hour idle timeout)
  CREATE TABLE xs (name text PRIMARY KEY, t text);
  GRANT SELECT ON xs TO app;
  INSERT INTO xs SELECT 'x' || i, authctx.create_session(u.id)
    FROM generate_series(1, 5) i JOIN authctx.users u ON u.email = 'u3@acme.test';
  UPDATE authctx.sessions SET last_seen_at = date_trunc('second', clock_timestamp()) - interval '10 minutes'
   WHERE id IN (SELECT authctx._token_id(t::authctx.token) FROM xs);
  -- the names of the tokens that authenticate now, each in its own lookup
  CREATE FUNCTION accepted() RETURNS text LANGUAGE plpgsql AS $$
  DECLARE r record; ok text[] := '{}';
  BEGIN
    FOR r IN SELECT name, t FROM toks ORDER BY name LOOP
      BEGIN
        PERFORM auth_begin(r.t);
        ok := ok || r.name;
      EXCEPTION WHEN invalid_authorization_specification THEN
        NULL;
      END;
    END LOOP;
    RETURN array_to_string(ok, ',');
  END $$;
  GRANT EXECUTE ON FUNCTION accepted() TO app;
});

# What committed and must survive: the sessions and API keys (without the
# last-seen / last-used hints, and without rows old enough for cleanup),
# revocations included, and every audit row.
my $committed_sql = q{
  SELECT (SELECT string_agg(id || ':' || coalesce(revoked_at::text, 'live'), ',' ORDER BY id)
            FROM authctx.sessions WHERE expires_at > now() - interval '1 day'),
         (SELECT string_agg(id || ':' || coalesce(revoked_at::text, 'live'), ',' ORDER BY id)
            FROM authctx.api_keys),
         (SELECT count(*) || ':' || md5(string_agg(a::text, ',' ORDER BY id)) FROM authctx.audit_log a)};
my $committed;
my $expect = 'k1,s1,s2,s3,s4,s5';
sub committed { return $node->safe_psql('postgres', $committed_sql) }
sub accepted { return $node->safe_psql('postgres', 'SELECT accepted()', extra_params => [ '-U', 'app' ]) }

# Fill the cache with every live token, and note what committed.
sub prepare
{
	my ($label) = @_;
	is(accepted(), $expect, "$label: before, exactly the live tokens authenticate");
	$committed = committed();
}

# A psql session of $role; its backend pid.
sub session
{
	my ($role) = @_;
	my $bg = $node->background_psql('postgres', extra_params => [ '-U', $role ], on_error_stop => 0);
	return ($bg, $bg->query_safe('SELECT pg_backend_pid()'));
}

# Send $sql on $bg without waiting for it.
sub start_query
{
	my ($bg, $sql) = @_;
	$bg->query_until(qr/sent/, "\\echo sent\n$sql\n");
}

# True once process $pid (or the first process matching $where) waits on a
# lock; returns the pid.
sub blocked
{
	my ($where) = @_;
	my $pid;
	$node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE ($where) AND wait_event_type = 'Lock'")
	  or return undef;
	$pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE ($where) AND wait_event_type = 'Lock' LIMIT 1");
	return $pid;
}

# SIGKILL $pid, wait for the postmaster to reinitialise, reap the psql
# sessions the crash ended, and check the recovery.
sub crash
{
	my ($pid, $label, @sessions) = @_;
	my $offset = -s $node->logfile;
	ok(defined $pid && kill('KILL', $pid), "$label: SIGKILL sent");
	$node->wait_for_log(qr/\(PID $pid\) was terminated by signal 9/, $offset);
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
	$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
	pass("$label: the postmaster reinitialised");
	eval { $_->{run}->finish } for @sessions;
	recovered($label);
}

# After a crash or restart: the server is up, the workers run, what
# committed is there, the cache starts empty and answers as the tables do.
sub recovered
{
	my ($label) = @_;
	ok($node->poll_query_until('postgres', 'SELECT true'), "$label: the server accepts connections");
	ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type IN ('authctx cleanup', 'authctx last-seen')}),
		"$label: the cleanup and last-seen workers run again");
	my ($cache, $now) = split /\n/, $node->safe_psql('postgres',
		"SELECT hits + misses + entries + member_entries FROM authctx._cache_stats(); $committed_sql");
	is($cache, '0', "$label: the session cache starts empty");
	is($now, $committed, "$label: no committed session, revocation or audit row is lost");
	is($node->safe_psql('postgres', 'SELECT accepted(); SELECT accepted()', extra_params => [ '-U', 'app' ]),
		"$expect\n$expect", "$label: exactly the live tokens authenticate, cold and again from the refilled cache");
	cmp_ok($node->safe_psql('postgres', 'SELECT hits FROM authctx._cache_stats()'), '>', 0,
		"$label: the cache serves hits again");
}

# ------------------------------------------------- a backend inside auth_begin
# a session never looked up (so not cached) and the sessions table locked:
# auth_begin waits inside the call, on the lock of the lookup
$node->safe_psql('postgres', q{
  INSERT INTO toks SELECT 's7', authctx.create_session(id) FROM authctx.users WHERE email = 'u1@acme.test'});
$expect = 'k1,s1,s2,s3,s4,s5,s7';
$committed = committed();
my ($locker) = session('postgres');
$locker->query_safe('BEGIN; LOCK TABLE authctx.sessions IN ACCESS EXCLUSIVE MODE;');
my ($bg, $pid) = session('app');
start_query($bg, q{SELECT auth_begin(t) FROM toks WHERE name = 's7';});
ok(blocked("pid = $pid"), 'auth_begin: the backend waits inside the call');
crash($pid, 'auth_begin', $bg, $locker);

# ------------------------------------------------- a backend inside a login
# audit_log locked: the login has inserted its session and waits to audit it
prepare('login');
($locker) = session('postgres');
$locker->query_safe('BEGIN; LOCK TABLE authctx.audit_log IN ACCESS EXCLUSIVE MODE;');
($bg, $pid) = session('app');
start_query($bg, q{SELECT authctx.login('u1@acme.test', 'u1 password 1');});
ok(blocked("pid = $pid"), 'login: the backend waits inside the call');
crash($pid, 'login', $bg, $locker);

# ------------------------------------------------- a backend inside a revocation
# s5 revoked and committed (while cached); then the revocation of s4 has
# updated its row and waits to audit it when it is killed: s4 stays live
$node->safe_psql('postgres', q{SELECT authctx.revoke_session(authctx._token_id(t::authctx.token)) FROM toks WHERE name = 's5'});
$expect = 'k1,s1,s2,s3,s4,s7';
prepare('revocation');
($locker) = session('postgres');
$locker->query_safe('BEGIN; LOCK TABLE authctx.audit_log IN ACCESS EXCLUSIVE MODE;');
($bg, $pid) = session('postgres');
start_query($bg, q{SELECT authctx.revoke_session(authctx._token_id(t::authctx.token)) FROM toks WHERE name = 's4';});
ok(blocked("pid = $pid"), 'revocation: the backend waits inside the call, its row updated');
crash($pid, 'revocation', $bg, $locker);

# ------------------------------------------------- the cleanup worker
prepare('cleanup worker');
crash($node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'authctx cleanup'}),
	'cleanup worker');
$node->safe_psql('postgres', q{
  INSERT INTO authctx.sessions (id, user_id, family_id, verifier, created_at, last_seen_at, expires_at)
  SELECT '00000000-0000-4000-8000-0000000000e1', id, gen_random_uuid(), '\x00', now() - interval '3 days',
         now() - interval '3 days', now() - interval '2 days' FROM authctx.users WHERE email = 'u3@acme.test'});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM authctx.sessions WHERE id = '00000000-0000-4000-8000-0000000000e1'}),
	'cleanup worker: after the restart it cleans up again');

# ------------------------------------------------- the last-seen worker
prepare('last-seen worker');
crash($node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'authctx last-seen'}),
	'last-seen worker');
sub seen_recently
{
	my ($name) = @_;
	return qq{SELECT last_seen_at > clock_timestamp() - interval '1 minute' FROM authctx.sessions
	           WHERE id = (SELECT authctx._token_id(t::authctx.token) FROM xs WHERE name = '$name')};
}
$node->safe_psql('postgres', q{SELECT auth_begin(t) FROM xs WHERE name = 'x1'}, extra_params => [ '-U', 'app' ]);
ok($node->poll_query_until('postgres', seen_recently('x1')), 'last-seen worker: after the restart notes are written again');

# ------------------------------------------------- an autonomous writer
# a failed login's record (lockout count, login_failed audit row), written
# by a worker of its own, held on audit_log
prepare('autonomous writer');
my $failed_sql = q{SELECT (SELECT coalesce(sum(failures), 0) FROM authctx.login_throttle) || ':' ||
                          (SELECT count(*) FROM authctx.audit_log WHERE event = 'login_failed')};
my $failed = $node->safe_psql('postgres', $failed_sql);
($locker) = session('postgres');
$locker->query_safe('BEGIN; LOCK TABLE authctx.audit_log IN ACCESS EXCLUSIVE MODE;');
($bg, $pid) = session('app');
start_query($bg, q{SELECT authctx.login('u1@acme.test', 'wrong password');});
crash(blocked(q{backend_type = 'authctx autonomous'}), 'autonomous writer', $bg, $locker);
is($node->safe_psql('postgres', $failed_sql), $failed, 'autonomous writer: its record did not commit, nothing else changed');
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT authctx.login('u1@acme.test', 'wrong password')},
	extra_params => [ '-U', 'app' ]);
my ($f, $a) = split /:/, $failed;
is($node->safe_psql('postgres', $failed_sql), ($f + 1) . ':' . ($a + 1),
	'autonomous writer: after the restart a failed login is recorded again');

# ------------------------------------------------- a last-seen writer
# a note queued by an auth_begin in a transaction that holds the sessions
# table: the writer the last-seen worker starts waits for it
prepare('last-seen writer');
($locker) = session('postgres');
$locker->query_safe(q{SET client_min_messages = error; BEGIN; LOCK TABLE authctx.sessions IN ACCESS EXCLUSIVE MODE;
  SELECT auth_begin(t) FROM xs WHERE name = 'x2';});
crash(blocked(q{backend_type = 'authctx autonomous'}), 'last-seen writer', $locker);

# ------------------------------------------------- immediate shutdown
# notes waiting in shared memory (the last-seen worker stopped: it comes
# back after 10 s) are lost; they are hints; nothing committed is
prepare('immediate shutdown');
$node->safe_psql('postgres', q{SELECT authctx.revoke_session(authctx._token_id(t::authctx.token)) FROM toks WHERE name = 's7';
  INSERT INTO toks SELECT 's8', authctx.create_session(id) FROM authctx.users WHERE email = 'u2@acme.test';
  SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'authctx last-seen'});
$expect = 'k1,s1,s2,s3,s4,s8';
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'authctx last-seen'}),
	'immediate shutdown: the last-seen worker is away');
# (notes of earlier steps that the worker had not written yet may wait too)
my $pending_before = $node->safe_psql('postgres', 'SELECT pending FROM authctx._seen_stats()');
$node->safe_psql('postgres', q{SELECT count(*) FROM xs, auth_begin(t) WHERE name IN ('x3', 'x4', 'x5')},
	extra_params => [ '-U', 'app' ]);
is($node->safe_psql('postgres', 'SELECT pending FROM authctx._seen_stats()') - $pending_before, 3,
	'immediate shutdown: three more last-seen notes wait in shared memory');
$committed = committed();
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', q{SELECT count(*) FROM authctx.sessions
  WHERE id IN (SELECT authctx._token_id(t::authctx.token) FROM xs WHERE name IN ('x3', 'x4', 'x5'))
    AND last_seen_at < clock_timestamp() - interval '4 minutes'}),
	'3', 'immediate shutdown: the queued notes were lost (hints), the rows keep their previous time');
is($node->safe_psql('postgres', 'SELECT queued + pending + written + failed FROM authctx._seen_stats()'),
	'0', 'immediate shutdown: the last-seen queue starts empty');
recovered('immediate shutdown');

$node->stop;
done_testing();
