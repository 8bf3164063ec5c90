# Records that must outlive a rollback fail closed (issue 10, item 4b): when
# every background worker slot is taken (here by parallel queries, which any
# role may run), the record cannot be written, and what needed it is
# refused with 55000 after the 2 s wait for a slot, instead of going
# through unrecorded: _autonomous_call, _autonomous (0.1.0's entry point),
# admin_begin, a failed login, a reused refresh token, a failed passkey
# login.  Nothing is half-written.  Once a slot is free again the records
# are written, and _autonomous_call returns the record's result, which is
# bounded (64 kB).  In both preload modes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

for my $preloaded (1, 0)
{
	my $mode = $preloaded ? 'preloaded' : 'not preloaded';
	# two slots for us to fill; the logical replication launcher takes one,
	# and, preloaded, the cleanup and last-seen workers two more
	my $slots = 2;
	my $node = PostgreSQL::Test::Cluster->new($preloaded ? 'slots_preload' : 'slots_nopreload');
	$node->init;
	$node->append_conf('postgresql.conf', sprintf(qq{
max_worker_processes = %d
max_parallel_workers = %d
authctx.password_memlimit = 8MB
authctx.password_opslimit = 2
}, $slots + 1 + ($preloaded ? 2 : 0), $slots));
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
authctx.cleanup_interval = 0
}) if $preloaded;
	$node->start;
	$node->safe_psql('postgres', q{
	  CREATE EXTENSION authctx;
	  CREATE ROLE fapp LOGIN IN ROLE authctx_app;
	  CREATE ROLE fadmin LOGIN IN ROLE authctx_admin;
	  SELECT authctx.set_password(authctx.create_user('fc@example.com'), 'fc password 1');
	});
	my $q = sub { return $node->safe_psql('postgres', $_[0]); };

	# a pair whose first refresh token is spent: presenting it again is reuse
	my $r1 = $q->(q{SELECT r.refresh_token FROM authctx.login('fc@example.com', 'fc password 1') r});
	$q->(qq{SELECT authctx.refresh('$r1')});
	my $chal = $q->(q{INSERT INTO authctx.webauthn_challenges (challenge, expires_at)
	                  VALUES (decode(md5('fail closed'), 'hex'), clock_timestamp() + interval '1 hour')
	                  RETURNING encode(challenge, 'hex')});
	my $state_sql = q{SELECT (SELECT count(*) FROM authctx.audit_log) || '/' ||
	                         (SELECT count(*) FROM authctx.login_throttle) || '/' ||
	                         (SELECT count(*) FROM authctx.sessions) || '/' ||
	                         (SELECT count(*) FROM authctx.sessions WHERE revoked_at IS NOT NULL) || '/' ||
	                         (SELECT count(*) FROM authctx.refresh_tokens WHERE spent_at IS NOT NULL OR revoked_at IS NOT NULL) || '/' ||
	                         (SELECT count(*) FROM authctx.webauthn_challenges)};

	# every free slot taken by a parallel worker sleeping in a query
	my @holders;
	for my $i (1 .. $slots)
	{
		my $h = $node->background_psql('postgres', extra_params => [ '-U', 'fapp' ], on_error_stop => 0);
		$h->query_until(qr/holding/, qq{SET force_parallel_mode = on;\n\\echo holding\nSELECT pg_sleep(300);\n});
		push @holders, $h;
	}
	ok($node->poll_query_until('postgres',
			qq{SELECT count(*) = $slots FROM pg_stat_activity WHERE backend_type = 'parallel worker'}),
		"$mode: parallel queries hold every free worker slot");
	my $before = $q->($state_sql);

	my ($rc, $out, $err, $t0);
	$t0 = time;
	($rc, $out, $err) = $node->psql('postgres', q{SELECT authctx._autonomous_call('audit', '{"event": "no_slot", "secret": "s3cr3t"}')});
	my $waited = time - $t0;
	like($err, qr/ERROR:  could not write the "audit" record in a transaction of its own\nDETAIL:  No background worker slot became free within 2000 ms\./,
		"$mode: _autonomous_call raises when no slot is free");
	ok($waited >= 1.9, "$mode: after waiting about 2 s for a slot (${waited}s)");
	unlike($err, qr/s3cr3t|no_slot/, "$mode: the message names the kind, not the payload");
	($rc, $out, $err) = $node->psql('postgres', q{\set VERBOSITY verbose
SELECT authctx._autonomous('audit', '{"event": "no_slot"}')});
	like($err, qr/ERROR:  55000: could not write the "audit" record in a transaction of its own/,
		"$mode: _autonomous raises 55000 too (0.1.0 returned false)");

	($rc, $out, $err) = $node->psql('postgres', q{\set VERBOSITY verbose
BEGIN; SELECT authctx.admin_begin('no slot'); SELECT authctx.admin_bypass(); COMMIT;},
		extra_params => [ '-U', 'fadmin' ]);
	like($err, qr/ERROR:  55000: could not record the admin_bypass audit event/, "$mode: admin_begin refuses");

	($rc, $out, $err) = $node->psql('postgres', q{\set VERBOSITY verbose
SELECT authctx.login('fc@example.com', 'wrong password')}, extra_params => [ '-U', 'fapp' ]);
	like($err, qr/ERROR:  55000: could not write the "login_failed" record/,
		"$mode: a failed login is refused, not let through uncounted");
	unlike($err, qr/wrong password/, "$mode: without the password");

	($rc, $out, $err) = $node->psql('postgres', qq{\\set VERBOSITY verbose
SELECT authctx.refresh('$r1')}, extra_params => [ '-U', 'fapp' ]);
	like($err, qr/ERROR:  55000: could not write the "refresh_reuse" record/,
		"$mode: a reused refresh token is refused");

	($rc, $out, $err) = $node->psql('postgres', qq{\\set VERBOSITY verbose
SELECT authctx.login_webauthn('\\x0102'::bytea, '\\x00'::bytea,
  convert_to('{"type":"webauthn.get","origin":"https://example.com","challenge":"'
             || rtrim(translate(encode('\\x$chal'::bytea, 'base64'), '+/', '-_'), '=') || '"}', 'UTF8'),
  '\\x00'::bytea, 'example.com', 'https://example.com')}, extra_params => [ '-U', 'fapp' ]);
	like($err, qr/ERROR:  55000: could not write the "webauthn_failed" record/,
		"$mode: a failed passkey login is refused");

	is($q->($state_sql), $before,
		"$mode: nothing half-written (audit, throttle, sessions, revocations, spent tokens, challenges)");

	# slots free again: the same records are written
	$q->(q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	        WHERE backend_type = 'client backend' AND usename = 'fapp' AND query LIKE 'SELECT pg_sleep%'});
	$_->quit for @holders;
	ok($node->poll_query_until('postgres',
			q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'parallel worker'}),
		"$mode: slots free again");
	is($q->(q{SELECT authctx._autonomous_call('audit', '{"event": "slot_free"}')}), '{}',
		"$mode: _autonomous_call writes the record and returns its result");
	($rc, $out, $err) = $node->psql('postgres', q{SELECT authctx.login('fc@example.com', 'wrong password')},
		extra_params => [ '-U', 'fapp' ]);
	like($err, qr/ERROR:  login failed/, "$mode: a failed login is 28P01 again");
	is($q->(q{SELECT t.failures FROM authctx.login_throttle t}), '1', "$mode: and counted");
	($rc, $out, $err) = $node->psql('postgres', qq{SELECT authctx.refresh('$r1')}, extra_params => [ '-U', 'fapp' ]);
	like($err, qr/ERROR:  invalid token/, "$mode: a reused refresh token is 28000 again");
	is($q->(q{SELECT count(*) FROM authctx.audit_log WHERE event = 'refresh_reuse'}), '1',
		"$mode: and its family revoked");

	# the result channel is bounded: 64 kB, larger is an error and nothing
	# of that record commits (a throwaway database, whose apply function we
	# replace)
	$q->(q{CREATE DATABASE bounded});
	$node->safe_psql('bounded', q{
	  CREATE EXTENSION authctx;
	  CREATE OR REPLACE FUNCTION authctx._autonomous_apply(kind text, payload jsonb) RETURNS jsonb
	  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	  BEGIN
	    INSERT INTO authctx.audit_log (occurred_at, event, db_role, detail)
	    VALUES (clock_timestamp(), 'bounded', 'test', '{}');
	    RETURN jsonb_build_object('r', repeat('x', (payload ->> 'n')::integer));
	  END $$;});
	is($node->safe_psql('bounded',
			q{SELECT length(authctx._autonomous_call('audit', '{"n": 65000}') ->> 'r')}),
		'65000', "$mode: a result of almost 64 kB comes back whole");
	($rc, $out, $err) = $node->psql('bounded', q{SELECT authctx._autonomous_call('audit', '{"n": 65600}')});
	like($err, qr/ERROR:  could not write the "audit" record in a transaction of its own/,
		"$mode: a larger one is an error");
	is($node->safe_psql('bounded', q{SELECT count(*) FROM authctx.audit_log WHERE event = 'bounded'}), '1',
		"$mode: and its record did not commit");
	like(slurp_file($node->logfile), qr/result of the authctx task "audit" is longer than 65535 bytes/,
		"$mode: the worker says why in the log");

	$node->stop;
}

done_testing();
