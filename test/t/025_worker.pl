# The worker module: the cleanup background worker (preloaded only) runs
# authctx.cleanup() every authctx.cleanup_interval in
# authctx.cleanup_database, follows SIGHUP, skips quietly a database without
# the extension, and logs once (no restart loop) a database that does not
# exist or does not accept connections, resuming when it is there;
# last-seen notes go through shared memory to the static last-seen worker,
# for every database (preloaded), or wait in the backend and are flushed
# when it exits (not preloaded); on a standby nothing autonomous is written
# and what needed it is refused (55000).
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
authctx.last_seen_interval = 10s
});
$node->start;
$node->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  SELECT authctx.set_password(authctx.create_user('wk@example.com'), 'wk password 1');
});

# Insert n sessions that expired two days ago (in database postgres, or $db).
sub add_expired
{
	my ($n, $db) = @_;
	$node->safe_psql($db // 'postgres', qq{
	  INSERT INTO authctx.sessions (id, user_id, family_id, verifier, created_at, last_seen_at, expires_at)
	  SELECT gen_random_uuid(), u.id, gen_random_uuid(), '\\x00'::bytea, now() - interval '3 days',
	         now() - interval '3 days', now() - interval '2 days'
	    FROM generate_series(1, $n), authctx.users u WHERE u.email = 'wk\@example.com'});
}
my $expired_sql = q{SELECT count(*) FROM authctx.sessions WHERE expires_at < now() - interval '1 day'};

# 1. the worker is there and cleans up periodically; it is connected to no
# database, each run goes through a worker connected to cleanup_database
my $cleanup_pid_sql = q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'authctx cleanup' AND datname IS NULL};
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($cleanup_pid_sql) w"),
	'cleanup worker running, connected to no database');
add_expired(50);
ok($node->poll_query_until('postgres', "SELECT ($expired_sql) = 0", 't'),
	'cleanup worker removed expired sessions');

# 2. interval 0 disables it; setting it again (SIGHUP) re-enables it
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER SYSTEM SET authctx.cleanup_interval = 0; SELECT pg_reload_conf();});
$node->wait_for_log(qr/authctx cleanup is paused: authctx.cleanup_interval is 0/, $log_offset);
add_expired(20);
sleep 3;
is($node->safe_psql('postgres', $expired_sql), '20', 'cleanup_interval = 0: nothing removed');
$node->safe_psql('postgres', q{ALTER SYSTEM SET authctx.cleanup_interval = '1s'; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', "SELECT ($expired_sql) = 0", 't'),
	'after reload the worker cleans again');

# 3. another database, without the extension: the runs go there (its
# commit counter moves, though nobody else connects to it) and skip it
# quietly (no error in the log), without restarting the worker
$node->safe_psql('postgres', q{CREATE DATABASE noext});
my $cleanup_pid = $node->safe_psql('postgres', $cleanup_pid_sql);
my $noext_commits = q{SELECT xact_commit FROM pg_stat_database WHERE datname = 'noext'};
my $commits0 = $node->safe_psql('postgres', $noext_commits);
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER SYSTEM SET authctx.cleanup_database = 'noext'; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', "SELECT ($noext_commits) > $commits0 + 2"),
	'runs go to the new cleanup_database');
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/authctx cleanup now runs in database "noext"/, 'change logged');
unlike($log, qr/ERROR|FATAL/, 'no error for a database without the extension');
is($node->safe_psql('postgres', $cleanup_pid_sql), $cleanup_pid, 'no restart for a change of database');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET authctx.cleanup_database; SELECT pg_reload_conf();});
add_expired(5);
ok($node->poll_query_until('postgres', "SELECT ($expired_sql) = 0", 't'),
	'cleanup back in postgres');

# 3b. a database that does not exist, then one that does not accept
# connections: said once in the log (not at every interval), no restart
# loop, and cleanup resumes when the database is there
my $count_in = sub { my ($re, $text) = @_; my @m = $text =~ /$re/g; return scalar @m; };
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER SYSTEM SET authctx.cleanup_database = 'later'; SELECT pg_reload_conf();});
$node->wait_for_log(qr/database "later" named by authctx.cleanup_database does not exist/, $log_offset);
sleep 4;
$log = slurp_file($node->logfile, $log_offset);
is($count_in->(qr/database "later" named by authctx.cleanup_database does not exist/, $log), 1,
	'a missing database is logged once in four intervals and more');
unlike($log, qr/ERROR|FATAL/, 'and not connected to');
is($node->safe_psql('postgres', $cleanup_pid_sql), $cleanup_pid, 'no restart');
$node->safe_psql('postgres', q{CREATE DATABASE later});
$node->safe_psql('later', q{
  CREATE EXTENSION authctx;
  SELECT authctx.create_user('wk@example.com');});
add_expired(7, 'later');
ok($node->poll_query_until('later', "SELECT ($expired_sql) = 0", 't'),
	'cleanup resumes when the database appears');
# the worker logs after its run has committed: wait for the line
ok($node->wait_for_log(qr/authctx cleanup runs again in database "later"/, $log_offset),
	'and says so');
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER DATABASE later ALLOW_CONNECTIONS false});
$node->wait_for_log(qr/database "later" named by authctx.cleanup_database does not accept connections/, $log_offset);
sleep 4;
$log = slurp_file($node->logfile, $log_offset);
is($count_in->(qr/database "later" named by authctx.cleanup_database does not accept connections/, $log), 1,
	'a database that does not accept connections is logged once in four intervals and more');
unlike($log, qr/ERROR|FATAL/, 'and not connected to');
is($node->safe_psql('postgres', $cleanup_pid_sql), $cleanup_pid, 'no restart');
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER DATABASE later ALLOW_CONNECTIONS true});
add_expired(7, 'later');
ok($node->poll_query_until('later', "SELECT ($expired_sql) = 0", 't'),
	'cleanup resumes when the database accepts connections again');
# the worker logs after its run has committed: wait for the line
ok($node->wait_for_log(qr/authctx cleanup runs again in database "later"/, $log_offset),
	'and says so');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET authctx.cleanup_database; SELECT pg_reload_conf();});

# 4. last-seen notes, preloaded: they go to a queue in shared memory that
# the static last-seen worker (connected to no database) empties every
# tenth of last_seen_interval (here 1 s), through a worker per database;
# a backend that stays connected and idle holds nothing back.
$node->safe_psql('postgres', q{CREATE ROLE wk_app LOGIN IN ROLE authctx_app});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'authctx last-seen' AND datname IS NULL}),
	'last-seen worker running, connected to no database');

# A session of wk@example.com in database $db, last seen 10 minutes ago:
# due a note (sliding last-seen: a tenth of the 1 hour idle timeout).
sub seen_session
{
	my ($node, $db) = @_;
	my $tok = $node->safe_psql($db, q{
	  SELECT authctx.create_session(id) FROM authctx.users WHERE email = 'wk@example.com'});
	$node->safe_psql($db, qq{
	  UPDATE authctx.sessions SET last_seen_at = clock_timestamp() - interval '10 minutes'
	   WHERE id = authctx._token_id('$tok'::authctx.token)});
	return $tok;
}
my $seen_sql = sub {
	my ($tok) = @_;
	return qq{SELECT last_seen_at > clock_timestamp() - interval '1 minute' FROM authctx.sessions
	           WHERE id = authctx._token_id('$tok'::authctx.token)};
};
my $stats_sql = q{SELECT written, failed, pending FROM authctx._seen_stats()};

my $s1 = seen_session($node, 'postgres');
my $bg = $node->background_psql('postgres', extra_params => [ '-U', 'wk_app' ]);
$bg->query_safe(qq{BEGIN READ ONLY; SELECT auth_begin('$s1'); COMMIT;});
ok($node->poll_query_until('postgres', $seen_sql->($s1), 't'),
	'note written by the worker while the backend stays idle');
is($node->safe_psql('postgres', $stats_sql), '1|0|0', 'queue counters: one written, none failed or pending');

# every database: notes from two databases are written, each in its own
$node->safe_psql('postgres', q{CREATE DATABASE other});
$node->safe_psql('other', q{
  CREATE EXTENSION authctx;
  SELECT authctx.create_user('wk@example.com');});
my ($s2, $o1) = (seen_session($node, 'postgres'), seen_session($node, 'other'));
my $bg2 = $node->background_psql('other', extra_params => [ '-U', 'wk_app' ]);
$bg->query_safe(qq{SELECT auth_begin('$s2');});
$bg2->query_safe(qq{SELECT auth_begin('$o1');});
ok($node->poll_query_until('other', $seen_sql->($o1), 't'), 'note written in the second database');
ok($node->poll_query_until('postgres', $seen_sql->($s2), 't'), 'and in the first');
is($node->safe_psql('other', $seen_sql->($s2)), '', 'a session of one database is no row in the other');
$bg2->quit;

# a database that lost the extension before its notes were written: that
# batch fails (logged, counted), the others are written, the worker lives on
$node->safe_psql('postgres', q{CREATE DATABASE gone});
$node->safe_psql('gone', q{
  CREATE EXTENSION authctx;
  SELECT authctx.create_user('wk@example.com');});
my ($g1, $s3) = (seen_session($node, 'gone'), seen_session($node, 'postgres'));
# stop the worker: it is suspended (SIGSTOP) with a termination pending, so
# that however slow this machine is, nothing is drained until the test lets
# it go (SIGCONT): it then exits, comes back after bgw_restart_time (10 s),
# and the notes wait in shared memory meanwhile
$log_offset = -s $node->logfile;
my $seen_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'authctx last-seen'});
ok(kill('STOP', $seen_pid), 'last-seen worker suspended');
$node->safe_psql('postgres', qq{SELECT pg_terminate_backend($seen_pid)});
my $bg3 = $node->background_psql('gone', extra_params => [ '-U', 'wk_app' ]);
$bg3->query_safe(qq{SELECT auth_begin('$g1');});
$bg3->quit;
$bg->query_safe(qq{SELECT auth_begin('$s3');});
is($node->safe_psql('postgres', q{SELECT pending FROM authctx._seen_stats()}), '2',
	'two notes wait in shared memory while the worker is away');
# a full queue (here: a testing limit of 2 places for wk_app): the note
# falls back to the backend's own list, handed to a worker at once
my $s4 = seen_session($node, 'postgres');
$node->safe_psql('postgres', q{ALTER ROLE wk_app SET authctx.debug_seen_queue_limit = 2});
$node->safe_psql('postgres', qq{BEGIN READ ONLY; SELECT auth_begin('$s4'); COMMIT;},
	extra_params => [ '-U', 'wk_app' ]);
$node->safe_psql('postgres', q{ALTER ROLE wk_app RESET authctx.debug_seen_queue_limit});
ok($node->poll_query_until('postgres', $seen_sql->($s4), 't'), 'queue full: note written through the backend');
is($node->safe_psql('postgres', $seen_sql->($s3) . q{; SELECT overflowed FROM authctx._seen_stats()}),
	"f\n1", 'while the queued notes still wait for the worker; one refused by the queue');
$node->safe_psql('gone', q{DROP EXTENSION authctx CASCADE});
kill('CONT', $seen_pid);
ok($node->poll_query_until('postgres', $seen_sql->($s3), 't'), 'restarted worker wrote the note it found');
ok($node->poll_query_until('postgres', q{SELECT failed = 1 AND pending = 0 FROM authctx._seen_stats()}),
	'the batch for the database without the extension failed');
like(slurp_file($node->logfile, $log_offset), qr/authctx could not write 1 last-seen times in database \d+/,
	'and was logged');
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'authctx last-seen'}),
	'last-seen worker still running');
$bg->quit;

# 5. on a standby: no autonomous write (55000), a failed login is refused
$node->backup('wk_backup');
my $standby = PostgreSQL::Test::Cluster->new('worker_standby');
$standby->init_from_backup($node, 'wk_backup', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
my ($rc, $out, $err) = $standby->psql('postgres', q{SELECT authctx._autonomous('audit', '{"event": "standby_test"}')});
like($err, qr/ERROR:  could not write the "audit" record in a transaction of its own\nDETAIL:  This server is a standby/,
	'autonomous write refused on a standby: 55000');
($rc, $out, $err) = $standby->psql('postgres', q{SELECT authctx._autonomous_call('audit', '{"event": "standby_test"}')});
like($err, qr/ERROR:  could not write the "audit" record in a transaction of its own/, 'and through _autonomous_call');
($rc, $out, $err) = $standby->psql('postgres', q{SELECT authctx.login('wk@example.com', 'wrong password')});
isnt($rc, 0, 'failed login on a standby: refused');
like($err, qr/ERROR:  (login failed|could not write the "login_failed" record in a transaction of its own)/,
	'with a generic message');
unlike($err, qr/wrong password/, 'password not echoed');
($rc, $out, $err) = $standby->psql('postgres', qq{SELECT (auth_begin('$s1')).auth_method},
	extra_params => [ '-U', 'wk_app' ]);
is($out, 'session', 'auth_begin on the standby (last-seen note skipped)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM authctx.audit_log WHERE event = 'standby_test'}),
	'0', 'nothing written for the standby');
$standby->stop;

$node->stop;
# 6. not preloaded: notes wait in the backend; the first is handed to a
# worker at once, a second within last_seen_interval waits, and is handed
# over when the backend exits
my $local = PostgreSQL::Test::Cluster->new('worker_local');
$local->init;
$local->append_conf('postgresql.conf', qq{
max_worker_processes = 16
});
$local->start;
$local->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  CREATE ROLE wk_app LOGIN IN ROLE authctx_app;
  SELECT authctx.create_user('wk@example.com');});
my @ls = (seen_session($local, 'postgres'), seen_session($local, 'postgres'));
my $lbg = $local->background_psql('postgres', extra_params => [ '-U', 'wk_app' ]);
$lbg->query_safe(qq{BEGIN READ ONLY; SELECT auth_begin('$ls[0]'); COMMIT;});
ok($local->poll_query_until('postgres', $seen_sql->($ls[0]), 't'), 'not preloaded: first note handed over at once');
$lbg->query_safe(qq{BEGIN READ ONLY; SELECT auth_begin('$ls[1]'); COMMIT;});
sleep 2;
is($local->safe_psql('postgres', $seen_sql->($ls[1])), 'f', 'second note still pending in the backend');
is($local->safe_psql('postgres', $stats_sql), '0|0|0', 'no shared queue without preload');
$lbg->quit;
ok($local->poll_query_until('postgres', $seen_sql->($ls[1]), 't'), 'pending note handed over at backend exit');
$local->stop;

done_testing();
