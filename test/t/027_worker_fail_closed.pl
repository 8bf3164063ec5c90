# Records that must outlive a rollback fail closed (issue 10, item 4b): when
# every background worker slot is taken (here by parallel queries, which any
# role may run), the record cannot be written, and what needed it is
# refused after the 2 s wait for a slot, instead of going through
# unrecorded: _autonomous_call, _autonomous (0.1.0's entry point) and
# admin_begin with 55000; a password login, wrong or RIGHT password, and a
# passkey login with 28P01, before anything is verified (no hashing, no
# signature check, nothing spent or counted: the worker decides every
# attempt, and there is none); verify_webauthn answers NULL; a reused
# refresh token is refused with 28000, spends nothing and leaves its family
# alive, with a LOG line naming the family.  Nothing is half-written, and no
# message or log line carries a password or a token.  Once a slot is free
# again the same calls work and their records are written, and
# _autonomous_call returns the record's result, which is bounded (64 kB).
# In both preload modes.
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
track_functions = all
log_min_messages = debug1
log_error_verbosity = verbose
}, $slots + 1 + ($preloaded ? 2 : 0), $slots));
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
authctx.cleanup_interval = 0
}) if $preloaded;
	$node->start;
	$node->safe_psql('postgres', q{
	  CREATE EXTENSION authctx;
	  CREATE ROLE fapp LOGIN IN ROLE authctx_app;
	  CREATE ROLE fmanager LOGIN IN ROLE authctx_manager;
	  CREATE ROLE fadmin LOGIN IN ROLE authctx_admin;
	  SELECT authctx.set_password(authctx.create_user('fc@example.com'), 'fc password 1');
	  -- secrets reach the server only from this table, never in a
	  -- statement's text (which log_min_error_statement logs on an error);
	  -- the statements that store them are not logged (the test cluster
	  -- logs every statement)
	  SET log_statement = 'none';
	  CREATE TABLE secrets (k text PRIMARY KEY, v text);
	  GRANT SELECT ON secrets TO PUBLIC;
	  SELECT authctx.set_password(authctx.create_user('canary@example.com'), 'Canary-Pw-7Yq2-RIGHT');
	  INSERT INTO secrets VALUES ('right', 'Canary-Pw-7Yq2-RIGHT'), ('wrong', 'Canary-Pw-7Yq2-WRONG');
	});
	my $q = sub { return $node->safe_psql('postgres', $_[0]); };
	# calls of the functions that hash a password or check a signature, as
	# reported by backends that have ended (each psql call is one)
	my $hashing_sql = q{SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
	                     WHERE schemaname = 'authctx'
	                       AND funcname IN ('_password_verify', '_password_dummy_verify',
	                                        '_password_hash', '_password_rehash',
	                                        '_webauthn_check_assertion')};

	# a pair whose first refresh token is spent: presenting it again is
	# reuse (the token stays in the secrets table)
	$q->(q{INSERT INTO secrets SELECT 'spent', r.refresh_token::text
	         FROM authctx.login('fc@example.com', 'fc password 1') r});
	$q->(q{SELECT authctx.refresh(v) FROM secrets WHERE k = 'spent'});
	my $r1 = $q->(q{SELECT v FROM secrets WHERE k = 'spent'});
	my $family = $q->(q{SELECT rt.family_id FROM authctx.refresh_tokens rt, secrets s
	                     WHERE s.k = 'spent' AND rt.id = authctx._token_id(s.v::authctx.token)});
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
	my $hashing_before = $q->($hashing_sql);
	my $log_offset = -s $node->logfile;

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

	# every authentication attempt is refused before anything is verified,
	# with the documented SQLSTATE and a generic message
	my $refused = sub {
		my ($sql, $role) = @_;
		my $t0 = time;
		my ($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
			extra_params => [ '-U', $role ]);
		return ($err, time - $t0, $out);
	};
	my ($e, $w);
	($e, $w) = $refused->(q{SELECT authctx.login('fc@example.com', 'wrong password')}, 'fapp');
	like($e, qr/ERROR:  28P01: login failed\n/, "$mode: a wrong password is refused with 28P01, not let through uncounted");
	($e, $w) = $refused->(q{SELECT authctx.login(s.k, s.v) FROM (SELECT 'canary@example.com' AS k, v FROM secrets WHERE k = 'right') s}, 'fapp');
	like($e, qr/ERROR:  28P01: login failed\n/, "$mode: the RIGHT password is refused too (28P01)");
	ok($w >= 1.9, "$mode: after the wait for a slot (${w}s), not at once");
	($e, $w) = $refused->(q{SELECT authctx.login('nobody@example.com', 'wrong password')}, 'fapp');
	like($e, qr/ERROR:  28P01: login failed\n/, "$mode: an unknown email likewise");
	($e, $w) = $refused->(q{SELECT authctx.refresh(v) FROM secrets WHERE k = 'spent'}, 'fapp');
	like($e, qr/ERROR:  28000: invalid token\n/,
		"$mode: a reused refresh token is refused with 28000, as any invalid token");
	my $passkey = qq{authctx.%s('\\x0102'::bytea, '\\x00'::bytea,
	  convert_to('{"type":"webauthn.get","origin":"https://example.com","challenge":"'
	             || rtrim(translate(encode('\\x$chal'::bytea, 'base64'), '+/', '-_'), '=') || '"}', 'UTF8'),
	  '\\x00'::bytea, 'example.com', 'https://example.com')};
	($e, $w) = $refused->('SELECT ' . sprintf($passkey, 'login_webauthn'), 'fapp');
	like($e, qr/ERROR:  28P01: login failed\n/, "$mode: a passkey login is refused with 28P01");
	my $answer;
	($e, $w, $answer) = $refused->('SELECT coalesce(' . sprintf($passkey, 'verify_webauthn') . q{::text, 'null')}, 'fmanager');
	is($answer, 'null', "$mode: verify_webauthn answers NULL");

	is($q->($state_sql), $before,
		"$mode: nothing half-written (audit, throttle, sessions, revocations, spent tokens, challenges)");
	is($q->($hashing_sql), $hashing_before, "$mode: no password hashed, no signature checked");
	is($q->(qq{SELECT count(*) FROM authctx.refresh_tokens WHERE family_id = '$family' AND revoked_at IS NULL}),
		'2', "$mode: the reused token's family stays alive (it could not be revoked)");
	my $log = slurp_file($node->logfile, $log_offset);
	like($log, qr/LOG:  00000: authentication attempt refused unverified: could not write the "login_attempt" record/,
		"$mode: the server log says why a login was refused");
	like($log, qr/LOG:  00000: authentication attempt refused unverified: could not write the "webauthn_attempt" record/,
		"$mode: and a passkey attempt");
	like($log, qr/LOG:  00000: reuse of a spent refresh token not recorded, login family $family not revoked/,
		"$mode: and names the family a reuse could not revoke");

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
	($rc, $out, $err) = $node->psql('postgres', q{SELECT authctx.refresh(v) FROM secrets WHERE k = 'spent'},
		extra_params => [ '-U', 'fapp' ]);
	like($err, qr/ERROR:  invalid token/, "$mode: a reused refresh token is 28000 again");
	is($q->(q{SELECT count(*) FROM authctx.audit_log WHERE event = 'refresh_reuse'}), '1',
		"$mode: and its family revoked");
	is($q->(qq{SELECT count(*) FROM authctx.refresh_tokens WHERE family_id = '$family' AND revoked_at IS NULL}),
		'0', "$mode: every token of it");
	# passwords: a wrong one counted, the right one logs in and clears it
	($rc, $out, $err) = $node->psql('postgres',
		q{SELECT authctx.login('canary@example.com', v) FROM secrets WHERE k = 'wrong'},
		extra_params => [ '-U', 'fapp' ]);
	like($err, qr/ERROR:  login failed/, "$mode: a wrong password is refused");
	is($q->(q{SELECT t.failures FROM authctx.login_throttle t JOIN authctx.users u ON u.id = t.user_id
	           WHERE u.email = 'canary@example.com'}), '1', "$mode: and counted");
	is($node->safe_psql('postgres',
			q{SELECT (authctx.login('canary@example.com', v)).session_id IS NOT NULL FROM secrets WHERE k = 'right'},
			extra_params => [ '-U', 'fapp' ]),
		't', "$mode: the right password logs in");
	is($q->(q{SELECT count(*) FROM authctx.login_throttle t JOIN authctx.users u ON u.id = t.user_id
	           WHERE u.email = 'canary@example.com'}), '0', "$mode: and clears the streak");
	# a passkey attempt: refused, and now its challenge is spent and audited
	($e, $w) = $refused->('SELECT ' . sprintf($passkey, 'login_webauthn'), 'fapp');
	like($e, qr/ERROR:  28P01: login failed\n/, "$mode: a bad passkey login is 28P01");
	is($q->(qq{SELECT (SELECT count(*) FROM authctx.webauthn_challenges WHERE challenge = '\\x$chal'::bytea)
	              || '/' || (SELECT count(*) FROM authctx.audit_log WHERE event = 'login_failed'
	                           AND detail ->> 'method' = 'webauthn')}),
		'0/1', "$mode: its challenge spent and the failure audited");

	# no password and no token in any line of the server log (the
	# statements above read them from a table; a statement's own text is
	# the application's)
	my $whole = slurp_file($node->logfile);
	unlike($whole, qr/Canary-Pw-7Yq2/, "$mode: no password in the server log");
	unlike($whole, qr/\Q$r1\E/, "$mode: no refresh token in the server log");
	like($whole, qr/"login_attempt"/, "$mode: (the log does talk about the attempts)");

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
