# Password attempts decided by the worker (issue 10, item 4), end to end,
# with real workers, in both preload modes:
#   - parallel logins for one account serialise: while a worker holds the
#     account lock, two more attempts for that email (another spelling of
#     it) each start a worker that waits for the lock, the callers waiting
#     on no lock at all; released, they are decided one after the other,
#     the second seeing the first's failure; an unknown email waits the
#     same way, another email does not;
#   - what the attempt shows: the worker's activity is "authctx task:
#     login_attempt", and no backend's activity, no message and no log line
#     carries the password (it reaches the server from a table here, so
#     that a statement's own text cannot carry it);
#   - the cost of one worker start per attempt: a login with the right
#     password against verify_password (the same argon2 verification)
#     called directly; printed, and bounded loosely.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

for my $preloaded (1, 0)
{
	my $mode = $preloaded ? 'preloaded' : 'not preloaded';
	my $node = PostgreSQL::Test::Cluster->new($preloaded ? 'attempts_preload' : 'attempts_nopreload');
	$node->init;
	$node->append_conf('postgresql.conf', qq{
max_worker_processes = 16
authctx.password_memlimit = 8MB
authctx.password_opslimit = 2
log_min_messages = debug1
log_error_verbosity = verbose
log_statement = all
});
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
authctx.cleanup_interval = 0
}) if $preloaded;
	$node->start;
	$node->safe_psql('postgres', q{
	  CREATE EXTENSION authctx;
	  CREATE ROLE aapp LOGIN IN ROLE authctx_app;
	  -- the statements that store the passwords are the test's own: not logged
	  SET log_statement = 'none';
	  SELECT authctx.set_password(authctx.create_user('ser@example.com'), 'Canary-Pw-3Kx9-RIGHT');
	  SELECT authctx.set_password(authctx.create_user('cost@example.com'), 'cost password 1');
	  CREATE TABLE secrets (k text PRIMARY KEY, v text);
	  GRANT SELECT ON secrets TO PUBLIC;
	  INSERT INTO secrets VALUES ('right', 'Canary-Pw-3Kx9-RIGHT'), ('wrong1', 'Canary-Pw-3Kx9-WRONG1'),
	                             ('wrong2', 'Canary-Pw-3Kx9-WRONG2');
	});
	my $q = sub { return $node->safe_psql('postgres', $_[0]); };
	my $waiting_workers = q{SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
	                         WHERE l.locktype = 'advisory' AND NOT l.granted
	                           AND a.backend_type = 'authctx autonomous'};
	# start a login in the background, as the application role
	my $attempt = sub {
		my ($email, $secret) = @_;
		my $h = $node->background_psql('postgres', extra_params => [ '-U', 'aapp' ], on_error_stop => 0);
		$h->query_until(qr/sent/, qq{\\echo sent\nSELECT authctx.login('$email', v) FROM secrets WHERE k = '$secret';\n});
		return $h;
	};

	# 1. a worker in the middle of an attempt holds the account lock (as
	# session h does here): two more attempts wait for it, in their workers
	my $h = $node->background_psql('postgres', on_error_stop => 0);
	$h->query_safe(q{BEGIN});
	$h->query_safe(q{SELECT authctx._lock_account('ser@example.com')});
	my $b = $attempt->('SER@Example.com', 'wrong1');
	ok($node->poll_query_until('postgres', "SELECT ($waiting_workers) = 1"), "$mode: the first attempt's worker waits");
	my $c = $attempt->('ser@EXAMPLE.COM', 'wrong2');
	ok($node->poll_query_until('postgres', "SELECT ($waiting_workers) = 2"), "$mode: and the second's");
	is($q->(q{SELECT count(*) FROM pg_stat_activity a
	           WHERE a.backend_type = 'client backend' AND a.query LIKE 'SELECT authctx.login(%'
	             AND a.wait_event_type = 'Lock'}),
		'0', "$mode: their callers wait for no lock (only for their workers)");
	is($q->(q{SELECT string_agg(DISTINCT a.query, ',') FROM pg_stat_activity a
	           WHERE a.backend_type = 'authctx autonomous'}),
		'authctx task: login_attempt', "$mode: a worker's activity names the kind only");
	is($q->(q{SELECT count(*) FROM pg_stat_activity a, secrets s
	           WHERE strpos(a.query, s.v) > 0 AND a.pid <> pg_backend_pid()}),
		'0', "$mode: no activity shows the password");
	is($q->(q{SELECT count(*) FROM authctx.login_throttle}), '0', "$mode: nothing decided yet");
	# another email does not wait
	my ($rc, $out, $err) = $node->psql('postgres',
		q{SELECT authctx.login('other@example.com', v) FROM secrets WHERE k = 'wrong1'},
		extra_params => [ '-U', 'aapp' ]);
	like($err, qr/ERROR:  login failed/, "$mode: meanwhile another email is decided at once");
	$h->query_safe(q{ROLLBACK});
	ok($node->poll_query_until('postgres',
			q{SELECT count(*) = 2 FROM authctx.audit_log
			   WHERE event = 'login_failed' AND detail ->> 'reason' = 'bad_password'}),
		"$mode: released, both attempts are decided");
	is($q->(q{SELECT string_agg(detail ->> 'failures', ',' ORDER BY id) FROM authctx.audit_log
	           WHERE event = 'login_failed' AND detail ->> 'reason' = 'bad_password'}),
		'1,2', "$mode: one after the other, the second seeing the first's failure");
	$b->quit;
	$c->quit;

	# 2. an unknown email takes the same lock, the same way
	$h->query_safe(q{BEGIN});
	$h->query_safe(q{SELECT authctx._lock_account('nobody-ser@example.com')});
	$b = $attempt->('Nobody-Ser@example.com', 'wrong1');
	ok($node->poll_query_until('postgres', "SELECT ($waiting_workers) = 1"), "$mode: an unknown email's attempt waits too");
	is($q->(q{SELECT count(*) FROM authctx.audit_log
	           WHERE event = 'login_failed' AND detail ->> 'reason' = 'unknown_user'}),
		'1', "$mode: (undecided: only the other email's failure so far)");
	$h->query_safe(q{ROLLBACK});
	ok($node->poll_query_until('postgres',
			q{SELECT count(*) = 2 FROM authctx.audit_log
			   WHERE event = 'login_failed' AND detail ->> 'reason' = 'unknown_user'}),
		"$mode: and is decided once the lock is free");
	$b->quit;
	$h->quit;

	# the right password, from the table: logs in (and clears the streak)
	is($node->safe_psql('postgres',
			q{SELECT (authctx.login('ser@example.com', v)).session_id IS NOT NULL FROM secrets WHERE k = 'right'},
			extra_params => [ '-U', 'aapp' ]),
		't', "$mode: the right password logs in");
	is($q->(q{SELECT count(*) FROM authctx.login_throttle}), '0', "$mode: and clears the streak");

	# 3. the cost of a worker per attempt, one backend, 20 attempts each
	my $cost = $q->(q{
	  DO $$
	  DECLARE t timestamptz; l float8; v float8; f float8;
	  BEGIN
	    PERFORM authctx.verify_password('cost@example.com', 'cost password 1');  -- warm up
	    t := clock_timestamp();
	    FOR i IN 1 .. 20 LOOP
	      PERFORM authctx.verify_password('cost@example.com', 'cost password 1');
	    END LOOP;
	    v := extract(epoch FROM clock_timestamp() - t) * 1000 / 20;
	    t := clock_timestamp();
	    FOR i IN 1 .. 20 LOOP
	      PERFORM authctx.login('cost@example.com', 'cost password 1');
	    END LOOP;
	    l := extract(epoch FROM clock_timestamp() - t) * 1000 / 20;
	    t := clock_timestamp();
	    FOR i IN 1 .. 20 LOOP
	      BEGIN
	        PERFORM authctx.login('cost-nobody@example.com', 'cost password 1');
	      EXCEPTION WHEN invalid_password THEN NULL;
	      END;
	    END LOOP;
	    f := extract(epoch FROM clock_timestamp() - t) * 1000 / 20;
	    CREATE TEMP TABLE cost AS SELECT v AS verify_ms, l AS login_ms, f AS unknown_ms;
	  END $$;
	  SELECT format('verify_password %s ms, login %s ms (right password), %s ms (unknown email): %s ms more per login',
	                round(verify_ms::numeric, 1), round(login_ms::numeric, 1), round(unknown_ms::numeric, 1),
	                round((login_ms - verify_ms)::numeric, 1))
	    FROM cost;});
	diag("$mode: $cost");
	my ($more) = $cost =~ /: ([-\d.]+) ms more per login/;
	ok(defined $more && $more < 1000, "$mode: a worker per attempt costs well under a second ($more ms)");

	# 4. no password in the server log, whatever was logged (log_statement
	# = all, debug1, verbose errors)
	my $log = slurp_file($node->logfile);
	unlike($log, qr/Canary-Pw/, "$mode: no password in the server log");
	like($log, qr/statement: ROLLBACK/, "$mode: (statements were logged)");

	$node->stop;
}

done_testing();
