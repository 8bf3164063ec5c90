# The notes application (examples/notes-app) end to end over real HTTP:
# PostgreSQL, PgBouncer in transaction mode (two server connections shared
# by every client) and app.py on loopback, in both preload modes.
#
#   - two tenants' users each see only their notes; another tenant's note
#     is 404 to read, change or delete; a viewer cannot write (403);
#   - a forged tenant (X-Tenant or Host subdomain of a tenant the user is
#     not a member of) is 403, two different tenants in one request 400;
#   - logout, revocation by a manager, removal from a tenant and disabling
#     the user take effect on the very next request;
#   - refresh rotates the pair; presenting a spent refresh token again is
#     401 and revokes the whole family (the rotated session too);
#   - the error mapping (401/403/400/404/409/415, cross-origin writes 403)
#     with JSON bodies and never a stack trace;
#   - the cookie is HttpOnly; Secure; SameSite=Lax, the session token is
#     never in a body;
#   - the server log shows auth_begin($1::text) bound as a parameter of an
#     unnamed statement (no SQL built from the token, no named prepared
#     statement left behind), and, preloaded, no token at all;
#   - a bounded concurrent load (test/notes/load.py: 6 clients, 480
#     requests, mixed tenants, one keep-alive connection each) in which no
#     response ever holds another tenant's note.
use strict;
use warnings;
use lib "$ENV{TESTDIR}/test/notes";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use NotesStack;

my $why = NotesStack::unavailable();
plan skip_all => $why if $why;

my $pw = 'correct horse battery staple';

for my $mode ('nopreload', 'preload')
{
	note("==== $mode");
	my $stack = NotesStack->start(name => "http_$mode", preload => $mode eq 'preload',
		conf => "log_statement = all\n");
	my $node = $stack->node;
	my $sql = sub { $node->safe_psql('notes', $_[0]) };
	my %tid = map { split /\|/ } split /\n/,
	  $sql->(q{SELECT slug, id FROM authctx.tenants WHERE slug IN ('acme', 'globex')});
	my %uid = map { split /\|/ } split /\n/, $sql->(q{SELECT email, id FROM authctx.users});

	my $login = sub {
		my ($email, %o) = @_;
		my $r = $stack->request('POST', '/login',
			json => { email => $email, password => $o{password} // $pw,
				defined $o{tenant} ? (tenant => $o{tenant}) : () },
			headers => $o{headers});
		return ($r, NotesStack::session_cookie($r));
	};

	# ------------------------------------------------------------ login
	my ($r, $alice) = $login->('alice@acme.test');
	is($r->{status}, 200, "$mode: alice logs in");
	my $sc = $r->{headers}{'set-cookie'}[0];
	like($sc, qr/^notes_session=axs_[A-Za-z0-9_-]+; Path=\/; Max-Age=\d+; HttpOnly; Secure; SameSite=Lax$/,
		"$mode: the session token is in an HttpOnly; Secure; SameSite=Lax cookie");
	like($r->{json}{refresh_token}, qr/^axr_/, "$mode: the refresh token is in the body");
	unlike($r->{body}, qr/axs_/, "$mode: the session token is not in the body");
	is($r->{json}{tenant_id}, $tid{acme}, "$mode: alice's session is in acme (her only tenant)");
	my $alice_session_id = $r->{json}{session_id};
	($r, my $bob) = $login->('bob@globex.test');
	is($r->{status}, 200, "$mode: bob logs in");
	my $bob_session_id = $r->{json}{session_id};

	$r = ($login->('alice@acme.test', password => 'wrong password'))[0];
	is_deeply([ $r->{status}, $r->{json} ], [ 401, { error => 'login failed', sqlstate => '28P01' } ],
		"$mode: a wrong password is 401 (28P01)");
	$r = ($login->('nobody@acme.test'))[0];
	is($r->{status}, 401, "$mode: an unknown email is 401 too");
	$r = ($login->('alice@acme.test', tenant => 'globex'))[0];
	is($r->{status}, 401, "$mode: a login into a tenant she is not a member of fails");

	# ------------------------------------------------------------ isolation
	for my $t ([ $alice, 'acme', 'plan A' ], [ $alice, 'acme', 'plan B' ], [ $bob, 'globex', 'merger' ])
	{
		$r = $stack->request('POST', '/notes', cookie => $t->[0],
			json => { title => "$t->[1]: $t->[2]", body => "secret of $t->[1]" });
		is($r->{status}, 201, "$mode: a note is created in $t->[1]");
		is($r->{json}{tenant_id}, $tid{ $t->[1] }, "$mode: by the database, in the context's tenant");
	}
	my $bob_note = $r->{json}{id};
	$r = $stack->request('GET', '/notes', cookie => $alice);
	is_deeply([ map { $_->{title} } @{ $r->{json}{notes} } ], [ 'acme: plan A', 'acme: plan B' ],
		"$mode: alice sees exactly acme's notes");
	$r = $stack->request('GET', '/notes', cookie => $bob);
	is_deeply([ map { $_->{title} } @{ $r->{json}{notes} } ], ['globex: merger'],
		"$mode: bob sees exactly globex's note");
	$r = $stack->request('GET', '/notes', bearer => $bob);
	is(scalar @{ $r->{json}{notes} }, 1, "$mode: the same with the token as a Bearer header");
	is($stack->request('GET', "/notes/$bob_note", cookie => $alice)->{status}, 404,
		"$mode: alice cannot read bob's note by id (404)");
	is($stack->request('PATCH', "/notes/$bob_note", cookie => $alice, json => { title => 'mine now' })->{status},
		404, "$mode: nor change it");
	is($stack->request('DELETE', "/notes/$bob_note", cookie => $alice)->{status}, 404,
		"$mode: nor delete it");
	is($stack->request('GET', "/notes/$bob_note", cookie => $bob)->{json}{title}, 'globex: merger',
		"$mode: bob's note is untouched");

	# forged tenants
	$r = $stack->request('GET', '/notes', cookie => $alice, headers => { 'X-Tenant' => 'globex' });
	is_deeply([ $r->{status}, $r->{json} ], [ 403, { error => 'forbidden', sqlstate => '42501' } ],
		"$mode: alice forging X-Tenant: globex is refused (403)");
	$r = $stack->request('GET', '/notes', cookie => $alice, headers => { 'X-Tenant' => $tid{globex} });
	is($r->{status}, 403, "$mode: by tenant id too");
	$r = $stack->request('GET', '/notes', cookie => $alice, headers => { Host => "globex.localhost:" . $stack->port });
	is($r->{status}, 403, "$mode: and through the Host subdomain");
	$r = $stack->request('GET', '/notes', cookie => $alice, headers => { Host => "acme.localhost:" . $stack->port });
	is(scalar @{ $r->{json}{notes} }, 2, "$mode: her own subdomain works");
	$r = $stack->request('GET', '/notes', cookie => $alice,
		headers => { Host => "acme.localhost:" . $stack->port, 'X-Tenant' => 'globex' });
	is($r->{status}, 400, "$mode: a Host and an X-Tenant naming different tenants is 400");
	$r = $stack->request('GET', '/notes', cookie => $alice, headers => { 'X-Tenant' => 'no-such-tenant' });
	is($r->{status}, 403, "$mode: an unknown tenant is 403");

	# carol: viewer in acme, member of globex; her login names no tenant
	($r, my $carol) = $login->('carol@both.test');
	is($r->{json}{tenant_id}, undef, "$mode: carol (two tenants) gets a session without a tenant");
	$r = $stack->request('GET', '/notes', cookie => $carol);
	is_deeply([ $r->{status}, $r->{json}{notes} ], [ 200, [] ],
		"$mode: without a tenant she sees no notes (policies fail closed)");
	$r = $stack->request('GET', '/notes', cookie => $carol, headers => { 'X-Tenant' => 'acme' });
	is(scalar @{ $r->{json}{notes} }, 2, "$mode: naming acme she sees acme's notes");
	is($r->{json}{role}, 'viewer', "$mode: as a viewer");
	$r = $stack->request('POST', '/notes', cookie => $carol, headers => { 'X-Tenant' => 'acme' },
		json => { title => 'acme: carol was here' });
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 403, '42501' ], "$mode: a viewer cannot write (403)");
	$r = $stack->request('POST', '/notes', cookie => $carol, headers => { 'X-Tenant' => 'globex' },
		json => { title => 'globex: from carol' });
	is($r->{status}, 201, "$mode: in globex, where she is a member, she can");
	$r = $stack->request('GET', '/me', cookie => $carol, headers => { Host => "globex.localhost:" . $stack->port });
	is_deeply([ @{ $r->{json} }{qw(tenant_id tenant tenant_name role auth_method)} ],
		[ $tid{globex}, 'globex', 'Globex Corp.', 'member', 'session' ],
		"$mode: /me shows the context auth_begin published");
	is_deeply([ map { "$_->{slug}:$_->{role}" } @{ $r->{json}{tenants} } ], [ 'acme:viewer', 'globex:member' ],
		"$mode: and the user's tenants (my_tenants), for a switcher");

	# ------------------------------------------------------------ errors
	$r = $stack->request('GET', '/notes/abc', cookie => $alice);
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 400, '22P02' ], "$mode: a bad id is 400 (22P02)");
	$r = $stack->request('GET', '/notes/99999999999999999999', cookie => $alice);
	is($r->{status}, 400, "$mode: an out-of-range id is 400");
	$r = $stack->request('POST', '/notes', cookie => $alice, json => { title => 'x' x 300 });
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 400, '23514' ], "$mode: a title over 200 characters is 400");
	$r = $stack->request('POST', '/notes', cookie => $alice, body => '{"title": ', content_type => 'application/json');
	is($r->{status}, 400, "$mode: malformed JSON is 400");
	$r = $stack->request('POST', '/notes', cookie => $alice, body => 'title=x',
		content_type => 'application/x-www-form-urlencoded');
	is($r->{status}, 415, "$mode: a form post is 415 (no cross-site form writes)");
	$r = $stack->request('POST', '/notes', cookie => $alice, json => { title => 'acme: x' },
		headers => { Origin => 'http://evil.test' });
	is($r->{status}, 403, "$mode: a write from another origin is 403");
	$r = $stack->request('POST', '/notes', cookie => $alice, json => { title => 'acme: from the page' },
		headers => { Origin => 'http://localhost:' . $stack->port });
	is($r->{status}, 201, "$mode: from the app's own origin it is accepted");
	$r = $stack->request('GET', '/notes', cookie => 'axs_garbage');
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 401, '28000' ], "$mode: a malformed token is 401 (28000)");
	is($stack->request('GET', '/notes')->{status}, 401, "$mode: no token is 401");
	is($stack->request('GET', '/nowhere')->{status}, 404, "$mode: an unknown path is 404");
	is($stack->request('PUT', '/notes', cookie => $alice)->{status}, 501, "$mode: an unknown method is 501");
	is($stack->request('DELETE', '/notes', cookie => $alice)->{status}, 405, "$mode: a wrong method is 405");
	my $log = $stack->app_log;
	unlike($log, qr/Traceback|File "/, "$mode: no stack trace in the app's output");
	unlike($log, qr/ax[srk]_[A-Za-z0-9_-]{20}/, "$mode: no token in the app's log");

	# ------------------------------------------------------------ passkey endpoints
	$r = $stack->request('POST', '/webauthn/challenge');
	like($r->{json}{challenge} // '', qr/^[A-Za-z0-9_-]{43}$/, "$mode: a passkey challenge: 32 bytes, base64url");
	is($r->{json}{rp_id}, 'localhost', "$mode: for the configured rp id");
	is($stack->request('POST', '/webauthn/challenge', json => { purpose => 'register' })->{status}, 401,
		"$mode: a registration challenge needs a session");
	$r = $stack->request('POST', '/webauthn/challenge', cookie => $alice, json => { purpose => 'register' });
	is($r->{json}{user}{name}, $uid{'alice@acme.test'}, "$mode: and names the session's user");
	is($stack->request('POST', '/webauthn/register',
		json => { attestation_object => 'AAAA', client_data_json => 'AAAA' })->{status}, 401,
		"$mode: registering needs a session");
	$r = $stack->request('POST', '/webauthn/register', cookie => $alice,
		json => { attestation_object => 'AAAA', client_data_json => 'AAAA' });
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 400, '22023' ],
		"$mode: a bogus registration is 400 (22023 from register_webauthn, as notes_registrar)");
	$r = $stack->request('POST', '/webauthn/login',
		json => { map { $_ => 'AAAA' } qw(credential_id authenticator_data client_data_json signature) });
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 401, '28P01' ], "$mode: a bogus assertion is 401 (28P01)");
	$r = $stack->request('POST', '/webauthn/login',
		json => { map { $_ => '%%' } qw(credential_id authenticator_data client_data_json signature) });
	is($r->{status}, 400, "$mode: a field that is not base64url is 400");

	# ------------------------------------------------------------ logout, revocation
	$r = $stack->request('POST', '/logout', cookie => $alice);
	is($r->{status}, 204, "$mode: logout");
	like($r->{headers}{'set-cookie'}[0],
		qr/^notes_session=; Path=\/; Max-Age=0;/, "$mode: clears the cookie");
	is($stack->request('GET', '/notes', cookie => $alice)->{status}, 401,
		"$mode: the logged-out token is refused by the next request");
	is($stack->request('POST', '/logout', cookie => $alice)->{status}, 204, "$mode: logout is idempotent");

	is($stack->request('GET', '/notes', cookie => $bob)->{status}, 200, "$mode: bob's session works");
	$sql->("SELECT authctx.revoke_session('$bob_session_id')");
	is($stack->request('GET', '/notes', cookie => $bob)->{status}, 401,
		"$mode: revoked by a manager, refused by the next request");

	is($stack->request('GET', '/notes', cookie => $carol, headers => { 'X-Tenant' => 'acme' })->{status},
		200, "$mode: carol reads acme");
	$sql->("SELECT authctx.remove_member('acme', '$uid{'carol@both.test'}')");
	is($stack->request('GET', '/notes', cookie => $carol, headers => { 'X-Tenant' => 'acme' })->{status},
		403, "$mode: removed from acme, the next request is 403");
	is($stack->request('GET', '/notes', cookie => $carol, headers => { 'X-Tenant' => 'globex' })->{status},
		200, "$mode: globex still works for her");
	$sql->("SELECT authctx.disable_user('$uid{'carol@both.test'}')");
	is($stack->request('GET', '/notes', cookie => $carol, headers => { 'X-Tenant' => 'globex' })->{status},
		401, "$mode: disabled, the next request is 401");
	$sql->("SELECT authctx.enable_user('$uid{'carol@both.test'}'),
	               authctx.add_member('acme', '$uid{'carol@both.test'}', 'viewer')");

	# ------------------------------------------------------------ refresh
	($r, my $s1) = $login->('alice@acme.test');
	my $r1 = $r->{json}{refresh_token};
	$r = $stack->request('POST', '/refresh', json => { refresh_token => $r1 });
	is($r->{status}, 200, "$mode: refresh");
	my $s2 = NotesStack::session_cookie($r);
	my $r2 = $r->{json}{refresh_token};
	ok($s2 && $s2 ne $s1 && $r2 ne $r1, "$mode: a new session cookie and a new refresh token");
	is($stack->request('GET', '/notes', cookie => $s2)->{status}, 200, "$mode: the new session works");
	$r = $stack->request('POST', '/refresh', json => { refresh_token => $r1 });
	is_deeply([ $r->{status}, $r->{json}{sqlstate} ], [ 401, '28000' ], "$mode: the spent refresh token again is 401");
	is($stack->request('GET', '/notes', cookie => $s2)->{status}, 401,
		"$mode: reuse revoked the family: the rotated session is refused");
	is($stack->request('POST', '/refresh', json => { refresh_token => $r2 })->{status}, 401,
		"$mode: and so is the rotated refresh token");
	is($sql->(q{SELECT count(*) FROM authctx.audit_log WHERE event = 'refresh_reuse'}), '1',
		"$mode: the reuse is audited although the request failed");
	is($stack->request('POST', '/refresh', json => {})->{status}, 400, "$mode: refresh without a token is 400");

	# ------------------------------------------------------------ the server log
	my $pglog = slurp_file($node->logfile);
	like($pglog, qr/execute <unnamed>: SELECT \* FROM public\.auth_begin\(\$1::text\)/,
		"$mode: auth_begin is called with the token as a bind parameter");
	like($pglog, qr/execute <unnamed>: SELECT \* FROM public\.auth_begin\(\$1::text, \$2::text\)/,
		"$mode: and with the tenant as a second one");
	unlike($pglog, qr/auth_begin\('/, "$mode: never with a literal");
	unlike($pglog, qr/execute (?!<unnamed>)\S+:/, "$mode: no named prepared statement (prepare_threshold=None)");
	if ($mode eq 'preload')
	{
		unlike($pglog, qr/ax[srk]_[A-Za-z0-9_-]{20}/, "$mode: no token in the server log (redacted)");
	}

	# ------------------------------------------------------------ concurrent load
	$sql->(q{
		SELECT authctx.add_member('acme', authctx.create_user('dave@acme.test'), 'member');
		SELECT authctx.add_member('globex', authctx.create_user('erin@globex.test'), 'member');
		SELECT authctx.set_password(id, 'correct horse battery staple') FROM authctx.users
		 WHERE email IN ('dave@acme.test', 'erin@globex.test');
		SELECT authctx.add_member('acme', authctx.create_user('frank@both.test'), 'member');
		SELECT authctx.add_member('globex', id, 'member'),
		       authctx.set_password(id, 'correct horse battery staple')
		  FROM authctx.users WHERE email = 'frank@both.test'});
	my @clients = (
		[ 'alice', 'alice@acme.test', ['acme'] ],
		[ 'dave', 'dave@acme.test', ['acme'] ],
		[ 'bob', 'bob@globex.test', ['globex'] ],
		[ 'erin', 'erin@globex.test', ['globex'] ],
		[ 'carol', 'carol@both.test', [ 'acme', 'globex' ], 'acme' ],
		[ 'frank', 'frank@both.test', [ 'acme', 'globex' ] ]);
	my $spec = encode_json([ map {
		{ name => $_->[0], email => $_->[1], password => $pw, tenants => $_->[2],
		  tenant_ids => \%tid, defined $_->[3] ? (viewer_in => $_->[3]) : () }
	} @clients ]);
	my ($out, $err) = ('', '');
	my $t0 = time;
	IPC::Run::run([ $NotesStack::PYTHON, "$ENV{TESTDIR}/test/notes/load.py", $stack->url, 80 ],
		'<', \$spec, '>', \$out, '2>', \$err);
	my $load = eval { decode_json($out) } || {};
	note("load: " . encode_json({ %$load, seconds => time - $t0 }));
	diag($err) if $err;
	cmp_ok($load->{requests} // 0, '>=', 480, "$mode: load: 6 clients made 480+ requests");
	cmp_ok($load->{notes_seen} // 0, '>', 1000, "$mode: load: and looked at over a thousand notes");
	is_deeply($load->{foreign}, [], "$mode: load: no response held another tenant's note");
	is_deeply($load->{errors}, [], "$mode: load: no unexpected status");
	is($load->{by_status}{500} // 0, 0, "$mode: load: no 500");
	my $backends = $node->safe_psql('notes',
		q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'notes_app'});
	cmp_ok($backends, '<=', 2, "$mode: load: all through PgBouncer's two server connections ($backends)");

	$stack->stop;
}

done_testing();
