# The notes application's pages in a real browser: headless Chromium
# (Debian's chromium, chromium-driver, python3-selenium) drives the login
# and notes pages of examples/notes-app (test/notes/browser.py): password
# login, passkey registration and passkey login through Chromium's virtual
# authenticator, ES256 and Ed25519, so that authctx's WebAuthn checks
# (register_webauthn, login_webauthn) meet an independent implementation;
# the tenants' own hosts; a screenshot of the notes page is saved in this
# test's log directory (tmp_check/log/076_notes_browser/notes_page.png).
# Then the database is asked what the browser did.
#
# Skipped (reported as skipped, not passed) only when the browser cannot
# start; test/deps installs it, so CI runs it.
use strict;
use warnings;
use lib "$ENV{TESTDIR}/test/notes";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use NotesStack;

my $why = NotesStack::unavailable();
plan skip_all => $why if $why;
for my $f ('/usr/bin/chromium', '/usr/bin/chromedriver')
{
	plan skip_all => "$f not installed: the browser cannot start" unless -x $f;
}

my $stack = NotesStack->start(name => 'browser', preload => 1);
my $node = $stack->node;
my $outdir = "$PostgreSQL::Test::Utils::log_path/076_notes_browser";
mkdir $outdir;

my ($out, $err) = ('', '');
IPC::Run::run([ $NotesStack::PYTHON, "$ENV{TESTDIR}/test/notes/browser.py", $stack->port, $outdir ],
	'>', \$out, '2>', \$err, IPC::Run::timeout(300));
my @lines = split /\n/, $out;
if (@lines && $lines[0] =~ /^skip_all - (.*)/)
{
	$stack->stop;
	plan skip_all => $1;
}

my $passkeys = 0;
for (@lines)
{
	if (/^ok - (.*)/) { pass($1); $passkeys++ if /passkey login/ }
	elsif (/^not ok - ([^:]*): (.*)/) { fail($1); diag($2) }
	elsif (/^skip - (.*)/) { SKIP: { skip($1, 1) } }
	elsif (/^# (.*)/) { note($1) }
	else { diag("browser.py: $_") }
}
ok(scalar @lines > 10, 'the browser script reported its checks') or diag($err);
like($out, qr/^# done$/m, 'the browser script ran to its end');
diag("browser.py stderr: $err") if $err =~ /\S/;

# What the database saw.
my $sql = sub { $node->safe_psql('notes', $_[0]) };
my $algs = $sql->(q{SELECT string_agg(c.alg::text, ',' ORDER BY c.created_at)
	FROM authctx.webauthn_credentials c JOIN authctx.users u ON u.id = c.user_id
	WHERE u.email = 'alice@acme.test'});
like($algs, qr/^-7,-[78]$/,
	"alice's passkeys in the database: ES256, then Ed25519 (ES256 when not offered), nothing else: $algs");
my $logins = $sql->(q{SELECT count(*) FROM authctx.audit_log
	WHERE event = 'login' AND detail->>'method' = 'webauthn'});
is($logins, $passkeys, "each passkey login the browser saw is a webauthn login in the audit log");
is($sql->(q{SELECT count(*) FROM authctx.webauthn_challenges c
	WHERE c.expires_at > clock_timestamp()}), '0', 'every challenge the browser used was spent');
is($sql->(q{SELECT count(*) FROM authctx.audit_log
	WHERE event = 'webauthn_failed' AND detail->>'reason' = 'registration: attestation'}), '1',
	'the refused attestation is audited with its reason');
is($sql->(q{SELECT count(*) FROM authctx.audit_log
	WHERE event = 'login_failed' AND detail->>'reason' = 'not_member'
	  AND detail->>'method' = 'webauthn'}), '1',
	'the passkey naming globex is audited as a failed login (not a member)');
unlike($stack->app_log, qr/Traceback/, 'no stack trace in the app log');

$stack->stop;
done_testing();
