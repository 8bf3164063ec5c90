# `make demo`'s HTTP tour (examples/notes-app/walkthrough.py) against a
# fresh notes stack (test/notes/NotesStack.pm): every answer it prints is
# the one it announces, so the demo cannot drift from the application.
# (examples/demo.sh itself needs root to install packages and start the
# stack as postgres; this runs the part a newcomer reads.)
use strict;
use warnings;
use lib "$ENV{TESTDIR}/test/notes";
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use NotesStack;

my $why = NotesStack::unavailable();
plan skip_all => $why if $why;

my $stack = NotesStack->start(name => 'walkthrough', preload => 1);
my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ $NotesStack::PYTHON, "$ENV{TESTDIR}/examples/notes-app/walkthrough.py", $stack->url ],
	'>', \$out, '2>', \$err);
ok($ok, 'the walkthrough gets every answer it expects') or diag($out . $err);
like($out, qr/Every answer was the expected one\./, 'and says so');
my @steps = $out =~ /^== (\d+)\./mg;
is_deeply(\@steps, [ 1 .. 8 ], 'all eight steps ran');
unlike($out, qr/ax[srko]_[A-Za-z0-9_-]{7}/, 'tokens are printed shortened');
unlike($out, qr/secret=[A-Z2-7]{5}/, 'and the TOTP secret');
$stack->stop;
done_testing();
