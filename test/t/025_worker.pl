# The worker module: the cleanup background worker (preloaded only) runs
# authctx.cleanup() every authctx.cleanup_interval in
# authctx.cleanup_database, follows SIGHUP, skips quietly a database without
# the extension; last-seen notes left in a backend are flushed when it
# exits; on a standby nothing autonomous is written and failures still
# raise their usual errors.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker_primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
max_worker_processes = 16
authctx.password_memlimit = 8MB
authctx.password_opslimit = 2
authctx.cleanup_interval = 1s
authctx.cleanup_database = 'postgres'
});
$node->start;
$node->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  SELECT authctx.set_password(authctx.create_user('wk@example.com'), 'wk password 1');
});

# Insert n sessions that expired two days ago.
sub add_expired
{
	my ($n) = @_;
	$node->safe_psql('postgres', qq{
	  INSERT INTO authctx.sessions (id, user_id, family_id, verifier, created_at, last_seen_at, expires_at)
	  SELECT gen_random_uuid(), u.id, gen_random_uuid(), '\\x00'::bytea, now() - interval '3 days',
	         now() - interval '3 days', now() - interval '2 days'
	    FROM generate_series(1, $n), authctx.users u WHERE u.email = 'wk\@example.com'});
}
my $expired_sql = q{SELECT count(*) FROM authctx.sessions WHERE expires_at < now() - interval '1 day'};

# 1. the worker is there and cleans up periodically
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'authctx cleanup' AND datname = 'postgres'}),
	'cleanup worker connected to authctx.cleanup_database');
add_expired(50);
ok($node->poll_query_until('postgres', "SELECT ($expired_sql) = 0", 't'),
	'cleanup worker removed expired sessions');

# 2. interval 0 disables it; setting it again (SIGHUP) re-enables it
$node->safe_psql('postgres', q{ALTER SYSTEM SET authctx.cleanup_interval = 0; SELECT pg_reload_conf();});
sleep 2;
add_expired(20);
sleep 3;
is($node->safe_psql('postgres', $expired_sql), '20', 'cleanup_interval = 0: nothing removed');
$node->safe_psql('postgres', q{ALTER SYSTEM SET authctx.cleanup_interval = '1s'; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', "SELECT ($expired_sql) = 0", 't'),
	'after reload the worker cleans again');

# 3. another database, without the extension: the worker reconnects there
# and skips it quietly (no error in the log)
$node->safe_psql('postgres', q{CREATE DATABASE noext});
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER SYSTEM SET authctx.cleanup_database = 'noext'; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'authctx cleanup' AND datname = 'noext'}),
	'worker restarted in the new cleanup_database');
sleep 3;
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/authctx cleanup worker restarting for database "noext"/, 'restart logged');
unlike($log, qr/ERROR|FATAL/, 'no error for a database without the extension');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET authctx.cleanup_database; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'authctx cleanup' AND datname = 'postgres'}),
	'worker back in postgres');

# 4. last-seen notes: the first is flushed at once; a second, within
# last_seen_interval, waits in the backend and is flushed when it exits
my ($s1, $s2) = split /\n/, $node->safe_psql('postgres', q{
  SELECT authctx.create_session(id) FROM authctx.users WHERE email = 'wk@example.com';
  SELECT authctx.create_session(id) FROM authctx.users WHERE email = 'wk@example.com';});
$node->safe_psql('postgres', q{
  UPDATE authctx.sessions SET last_seen_at = clock_timestamp() - interval '2 minutes'
   WHERE user_id = (SELECT id FROM authctx.users WHERE email = 'wk@example.com')});
my $seen_sql = sub {
	my ($tok) = @_;
	return qq{SELECT last_seen_at > clock_timestamp() - interval '1 minute' FROM authctx.sessions
	           WHERE id = authctx._token_id('$tok'::authctx.token)};
};
$node->safe_psql('postgres', q{CREATE ROLE wk_app LOGIN IN ROLE authctx_app});
my $bg = $node->background_psql('postgres', extra_params => [ '-U', 'wk_app' ]);
$bg->query_safe(qq{BEGIN READ ONLY; SELECT auth_begin('$s1'); COMMIT;});
ok($node->poll_query_until('postgres', $seen_sql->($s1), 't'), 'first note flushed at once');
$bg->query_safe(qq{BEGIN READ ONLY; SELECT auth_begin('$s2'); COMMIT;});
sleep 2;
is($node->safe_psql('postgres', $seen_sql->($s2)), 'f', 'second note still pending in the backend');
$bg->quit;
ok($node->poll_query_until('postgres', $seen_sql->($s2), 't'), 'pending note flushed at backend exit');

# 5. on a standby: no autonomous write (false, WARNING), errors unchanged
$node->backup('wk_backup');
my $standby = PostgreSQL::Test::Cluster->new('worker_standby');
$standby->init_from_backup($node, 'wk_backup', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
my ($rc, $out, $err) = $standby->psql('postgres', q{SELECT authctx._autonomous('audit', '{"event": "standby_test"}')});
is($out, 'f', 'autonomous write refused on a standby');
like($err, qr/WARNING:  could not write the "audit" record in a transaction of its own/, 'with a WARNING');
($rc, $out, $err) = $standby->psql('postgres', q{SELECT authctx.login('wk@example.com', 'wrong password')});
like($err, qr/ERROR:  login failed/, 'failed login on a standby: still 28P01, generic');
unlike($err, qr/wrong password/, 'password not echoed');
($rc, $out, $err) = $standby->psql('postgres', qq{SELECT (auth_begin('$s1')).auth_method},
	extra_params => [ '-U', 'wk_app' ]);
is($out, 'session', 'auth_begin on the standby (last-seen note skipped)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM authctx.audit_log WHERE event = 'standby_test'}),
	'0', 'nothing written for the standby');
$standby->stop;

$node->stop;
done_testing();
