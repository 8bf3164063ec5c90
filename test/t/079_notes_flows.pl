# The notes application's account flows (examples/notes-app) end to end
# over real HTTP: PostgreSQL, PgBouncer in transaction mode and app.py on
# loopback (test/notes/NotesStack.pm), in both preload modes.
#
#   - forgot password: the same 202 for a known, an unknown, a disabled
#     and a deleted user's address, a reset link in the outbox only for the
#     known one; a newer link
#     supersedes the older; a too-short password is 400 (22023) and leaves
#     the link usable; the reset revokes every session and refresh token of
#     the user; the old password is refused, the new one logs in; the
#     spent link again is 401;
#   - verify email: a link to the signed-in user's address, spent once,
#     /account shows the address verified; a reset link there is 401;
#   - two-factor: enrol (an otpauth:// URI), confirm with a code this test
#     computes (RFC 6238, HMAC-SHA1 from Digest::SHA), ten recovery codes;
#     a wrong code is 401 and counted; a right one steps the session up
#     ('otp' in authctx.amr() from the next request on); the same code
#     again is 401; a recovery code works once; replacing the factor needs
#     a stepped-up session;
#   - step-up in a policy: deleting a note without a second factor is 403
#     (the restrictive policy hides the row), with one 204;
#   - the pages the links land on are served;
#   - no token, URI or code in the app's log; preloaded, no axo_ token in
#     the server log (log_statement = all logs the bind parameters).
use strict;
use warnings;
use lib "$ENV{TESTDIR}/test/notes";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(hmac_sha1);
use NotesStack;

my $why = NotesStack::unavailable();
plan skip_all => $why if $why;

my $pw = 'correct horse battery staple';
my $new_pw = 'a much better passphrase, surely';

# RFC 4648 base32 (the otpauth:// secret) to bytes
sub base32_decode
{
	my ($s) = @_;
	$s =~ tr/=//d;
	my $bits = join '', map { sprintf '%05b', index('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', uc $_) } split //, $s;
	return pack 'B*', substr($bits, 0, 8 * int(length($bits) / 8));
}

# RFC 6238 TOTP (RFC 4226 HOTP with HMAC-SHA1, 6 digits) of a 30-second step
sub totp
{
	my ($key, $step) = @_;
	my $mac = hmac_sha1(pack('NN', int($step / 2**32), $step % 2**32), $key);
	my $off = ord(substr($mac, -1)) & 0x0f;
	my $bin = unpack('N', substr($mac, $off, 4)) & 0x7fffffff;
	return sprintf '%06d', $bin % 1_000_000;
}

# the RFC 6238 appendix B vector (SHA-1, T = 59 s): 94287082, 8 digits
{
	my $mac = hmac_sha1(pack('NN', 0, 1), '12345678901234567890');
	my $off = ord(substr($mac, -1)) & 0x0f;
	is(sprintf('%08d', (unpack('N', substr($mac, $off, 4)) & 0x7fffffff) % 100_000_000), '94287082',
		'the test\'s own TOTP matches RFC 6238 appendix B');
	is(totp('12345678901234567890', 1), '287082', 'and its 6-digit form');
}

for my $mode ('nopreload', 'preload')
{
	note("==== $mode");
	my $stack = NotesStack->start(name => "flows_$mode", preload => $mode eq 'preload',
		conf => "log_statement = all\n");
	my $node = $stack->node;
	my $sql = sub { $node->safe_psql('notes', $_[0]) };
	my $login = sub {
		my ($email, $password) = @_;
		my $r = $stack->request('POST', '/login', json => { email => $email, password => $password // $pw });
		return ($r, NotesStack::session_cookie($r));
	};
	my $mail = sub {
		my ($purpose, $to) = @_;
		my @m = grep { $_->{purpose} eq $purpose && $_->{to} eq $to } @{ $stack->outbox };
		return undef unless @m;
		my ($token) = $m[-1]{link} =~ /#(axo_[A-Za-z0-9_-]+)$/;
		return ($token, scalar @m);
	};

	# ------------------------------------------------------------ forgot password
	my ($r, $alice) = $login->('alice@acme.test');
	is($r->{status}, 200, "$mode: alice logs in");
	my $alice_refresh = $r->{json}{refresh_token};
	my ($r2, $alice2) = $login->('alice@acme.test');
	is($stack->request('GET', '/notes', cookie => $alice2)->{status}, 200, "$mode: a second session of hers works");

	$r = $stack->request('POST', '/password/forgot', json => { email => 'Alice@Acme.test' });
	is_deeply([ $r->{status}, $r->{json} ], [ 202, { sent => JSON::PP::true } ], "$mode: forgot password: 202");
	unlike($r->{body}, qr/axo_/, "$mode: the token is not in the answer");
	$r = $stack->request('POST', '/password/forgot', json => { email => 'nobody@acme.test' });
	is_deeply([ $r->{status}, $r->{json} ], [ 202, { sent => JSON::PP::true } ],
		"$mode: the same answer for an address without an account");
	$sql->(q{SELECT authctx.disable_user(user_id) FROM notes.accounts WHERE email = 'carol@both.test'});
	$r = $stack->request('POST', '/password/forgot', json => { email => 'carol@both.test' });
	is($r->{status}, 202, "$mode: the same answer for a disabled user");
	$sql->(q{SELECT authctx.enable_user(user_id) FROM notes.accounts WHERE email = 'carol@both.test'});
	$sql->(q{INSERT INTO notes.accounts VALUES (gen_random_uuid(), 'gone@acme.test')});
	$r = $stack->request('POST', '/password/forgot', json => { email => 'gone@acme.test' });
	is($r->{status}, 202, "$mode: and for an account authctx no longer has");
	my $box = $stack->outbox;
	is_deeply([ map { "$_->{purpose} $_->{to}" } @$box ], ['reset_password alice@acme.test'],
		"$mode: one message in the outbox, to alice's address only (none to the others)");
	like($box->[0]{link}, qr{^http://localhost:\d+/reset\.html#axo_[A-Za-z0-9_-]{20,}$},
		"$mode: a link with the token in its fragment");
	my ($first_reset) = $mail->('reset_password', 'alice@acme.test');
	$stack->request('POST', '/password/forgot', json => { email => 'alice@acme.test' });
	my ($reset, $n) = $mail->('reset_password', 'alice@acme.test');
	is($n, 2, "$mode: asking again sends a second link");
	isnt($reset, $first_reset, "$mode: with a new token");
	$r = $stack->request('POST', '/password/reset', json => { token => $first_reset, password => $new_pw });
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 401, '28000' ], "$mode: the superseded link is refused (401)");

	$r = $stack->request('POST', '/password/reset', json => { token => $reset, password => 'short' });
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 400, '22023' ], "$mode: a too-short password is 400 (22023)");
	is($stack->request('GET', '/notes', cookie => $alice)->{status}, 200,
		"$mode: nothing was revoked by the refused reset");
	$r = $stack->request('POST', '/password/reset', json => { token => $reset, password => $new_pw });
	is_deeply([ $r->{status}, $r->{json} ], [ 200, { reset => JSON::PP::true } ],
		"$mode: the same link then resets the password");
	like($r->{headers}{'set-cookie'}[0] // '', qr/^notes_session=; Path=\/; Max-Age=0;/,
		"$mode: and clears the browser's cookie (the reset logs nobody in)");
	is($stack->request('GET', '/notes', cookie => $alice)->{status}, 401, "$mode: her old session is revoked");
	is($stack->request('GET', '/notes', cookie => $alice2)->{status}, 401, "$mode: so is the other one");
	is($stack->request('POST', '/refresh', json => { refresh_token => $alice_refresh })->{status}, 401,
		"$mode: and her refresh token");
	is(($login->('alice@acme.test'))[0]{status}, 401, "$mode: the old password is refused");
	($r, $alice) = $login->('alice@acme.test', $new_pw);
	is($r->{status}, 200, "$mode: the new one logs in");
	$r = $stack->request('POST', '/password/reset', json => { token => $reset, password => 'yet another passphrase' });
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 401, '28000' ], "$mode: the spent link again is 401");
	is(($login->('alice@acme.test', $new_pw))[0]{status}, 200, "$mode: and changed nothing");
	is($stack->request('POST', '/password/reset', json => { token => $reset })->{status}, 400,
		"$mode: a reset without a password is 400");

	# ------------------------------------------------------------ verify email
	is($stack->request('POST', '/email/verify/send')->{status}, 401, "$mode: sending a verification needs a session");
	$r = $stack->request('GET', '/account', cookie => $alice);
	is_deeply([ @{ $r->{json} }{qw(email email_verified_at totp_enabled)} ],
		[ 'alice@acme.test', undef, JSON::PP::false ], "$mode: /account: not verified, no second factor");
	$r = $stack->request('POST', '/email/verify/send', cookie => $alice);
	is($r->{status}, 202, "$mode: a verification link is sent");
	my ($verify) = $mail->('verify_email', 'alice@acme.test');
	like($verify // '', qr/^axo_/, "$mode: to her address");
	$r = $stack->request('POST', '/email/verify', json => { token => $reset });
	is($r->{status}, 401, "$mode: a (spent) reset token does not verify an email");
	$r = $stack->request('POST', '/email/verify', json => { token => 'axs_' . ('A' x 40) });
	is($r->{status}, 401, "$mode: nor does a garbage token");
	$r = $stack->request('POST', '/email/verify', json => { token => $verify });
	is_deeply([ $r->{status}, $r->{json}{verified} ], [ 200, JSON::PP::true ], "$mode: the link verifies the email");
	like($stack->request('GET', '/account', cookie => $alice)->{json}{email_verified_at} // '',
		qr/^\d{4}-\d\d-\d\d/, "$mode: /account shows when");
	is($stack->request('POST', '/email/verify', json => { token => $verify })->{status}, 401,
		"$mode: the link works once");

	# ------------------------------------------------------------ two-factor
	my $note = $stack->request('POST', '/notes', cookie => $alice, json => { title => 'acme: to delete' })->{json}{id};
	$r = $stack->request('DELETE', "/notes/$note", cookie => $alice);
	is($r->{status}, 403, "$mode: deleting a note needs a second factor (403)");
	like($r->{json}{error}, qr/second factor/, "$mode: and says so");
	is($stack->request('GET', "/notes/$note", cookie => $alice)->{status}, 200, "$mode: the note is still there");

	is($stack->request('POST', '/totp/enroll')->{status}, 401, "$mode: enrolling needs a session");
	$r = $stack->request('POST', '/totp/enroll', cookie => $alice);
	is($r->{status}, 200, "$mode: enrol TOTP");
	my ($secret) = ($r->{json}{uri} // '') =~ m{^otpauth://totp/[^?]+\?(?:.*&)?secret=([A-Z2-7]+)};
	ok($secret, "$mode: an otpauth:// URI with a base32 secret");
	my $key = base32_decode($secret // '');
	is(length($key), 20, "$mode: 160 bits");
	my $step = int(time() / 30);
	$r = $stack->request('POST', '/totp/confirm', cookie => $alice, json => { code => totp($key, $step - 5) });
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 401, '28000' ], "$mode: confirming with a stale code is refused");
	$r = $stack->request('POST', '/totp/confirm', cookie => $alice, json => { code => totp($key, $step) });
	is($r->{status}, 200, "$mode: confirmed with the current code");
	my @recovery = @{ $r->{json}{recovery_codes} // [] };
	is(scalar @recovery, 10, "$mode: ten recovery codes");
	is($stack->request('GET', '/account', cookie => $alice)->{json}{totp_enabled}, JSON::PP::true,
		"$mode: /account shows the factor on");
	is($stack->request('POST', '/totp/enroll', cookie => $alice)->{status}, 403,
		"$mode: replacing it needs a stepped-up session");

	$r = $stack->request('POST', '/totp/verify', cookie => $alice, json => { code => totp($key, $step - 2) });
	is_deeply([ $r->{status}, $r->{json}{error} ], [ 401, 'wrong code' ], "$mode: a code from two steps ago is 401");
	is($sql->(q{SELECT count(*) FROM authctx.audit_log WHERE event = 'totp_failed'}), '1',
		"$mode: and recorded (totp_failed) although the request failed");
	is($stack->request('POST', '/totp/verify', json => { code => '123456' })->{status}, 401,
		"$mode: verifying needs a session");
	# the confirmation used this step: the next one's code (accepted one step ahead)
	my $code = totp($key, $step + 1);
	$r = $stack->request('POST', '/totp/verify', cookie => $alice, json => { code => $code });
	is_deeply([ $r->{status}, $r->{json} ], [ 200, { verified => JSON::PP::true } ], "$mode: the right code steps the session up");
	is_deeply($stack->request('GET', '/account', cookie => $alice)->{json}{amr}, [ 'pwd', 'otp' ],
		"$mode: the next request's authctx.amr() has otp");
	is($stack->request('POST', '/totp/verify', cookie => $alice, json => { code => $code })->{status}, 401,
		"$mode: the same code twice is refused");
	is($stack->request('DELETE', "/notes/$note", cookie => $alice)->{status}, 204,
		"$mode: stepped up, deleting the note is allowed");
	is($stack->request('GET', "/notes/$note", cookie => $alice)->{status}, 404, "$mode: it is gone");

	my ($r3, $alice3) = $login->('alice@acme.test', $new_pw);
	is_deeply($stack->request('GET', '/account', cookie => $alice3)->{json}{amr}, ['pwd'],
		"$mode: another session of hers is not stepped up");
	$r = $stack->request('POST', '/totp/verify', cookie => $alice3, json => { code => $recovery[0] });
	is($r->{status}, 200, "$mode: a recovery code steps it up");
	my ($r4, $alice4) = $login->('alice@acme.test', $new_pw);
	is($stack->request('POST', '/totp/verify', cookie => $alice4, json => { code => $recovery[0] })->{status}, 401,
		"$mode: the recovery code works once");
	is($stack->request('POST', '/totp/enroll', cookie => $alice3)->{status}, 200,
		"$mode: a stepped-up session may replace the factor");

	# bob has no factor: verify_totp says so (55000)
	my (undef, $bob) = $login->('bob@globex.test');
	$r = $stack->request('POST', '/totp/verify', cookie => $bob, json => { code => '123456' });
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 409, '55000' ], "$mode: a user without a factor cannot step up (409)");

	# ------------------------------------------------------------ pages
	for my $page ('/reset.html', '/verify.html')
	{
		$r = $stack->request('GET', $page);
		like($r->{body}, qr/<script src="\/static\/notes\.js" defer>/, "$mode: $page is served, its script from /static");
	}
	like($stack->request('GET', '/')->{body}, qr/id="forgot"/, "$mode: the login page has \"forgot password\"");
	like($stack->request('GET', '/notes.html')->{body}, qr/id="totp-enroll"/, "$mode: the notes page \"enable two-factor\"");

	# ------------------------------------------------------------ logs
	my $log = $stack->app_log;
	unlike($log, qr/Traceback|File "/, "$mode: no stack trace in the app's output");
	unlike($log, qr/axo_|otpauth|\Q$secret\E|\Q$recovery[1]\E/, "$mode: no token, URI, secret or code in the app's log");
	if ($mode eq 'preload')
	{
		unlike(slurp_file($node->logfile), qr/axo_[A-Za-z0-9_-]{20}/, "$mode: no axo_ token in the server log");
	}
	$stack->stop;
}

done_testing();
