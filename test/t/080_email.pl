# Issue 18, point 7: one normalisation of emails (authctx._email_key:
# Unicode NFC, default case folding, NFC) for uniqueness and lookup alike,
# independent of the database's collation, ctype and encoding:
#   - in a UTF-8 database with the C locale (where lower() folds only
#     ASCII), accented capitals, NFC and NFD spellings, and full case
#     folding (Straße, STRASSE) are one address, for create_user, set_email,
#     login and verify_password;
#   - in a LATIN1 database the same holds (emails are converted to UTF-8 to
#     be keyed);
#   - in a SQL_ASCII database an email must be valid UTF-8 (22021);
#   - the update from 0.1.0, which told such spellings apart, stops with a
#     23505 naming the users who now share an address, loses nothing, and
#     goes through once they are told apart (and gives a login family whose
#     session row 0.1.0's cleanup deleted a placeholder row, so that
#     list_sessions and revoke_session reach it).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# the literals below are UTF-8, whatever the database's encoding
$ENV{PGCLIENTENCODING} = 'UTF8';

my $node = PostgreSQL::Test::Cluster->new('email');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'authctx'",
	'max_worker_processes = 16',
	'authctx.password_memlimit = 8MB',
	'authctx.password_opslimit = 1',
	'authctx.cleanup_interval = 0',
	''));
$node->start;

# psql's answer: stdout, or "error SQLSTATE" (the source is UTF-8 bytes, so is
# what psql sends and prints)
sub ask
{
	my ($db, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, "\\set VERBOSITY sqlstate\n$sql",
		extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
	return $out if $rc == 0;
	$err =~ s/^.*?ERROR:\s*//s;
	chomp $err;
	return "error $err";
}

$node->safe_psql('postgres', q{
  CREATE DATABASE c_utf8 TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C';
  CREATE DATABASE latin1 TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C';
  CREATE DATABASE ascii TEMPLATE template0 ENCODING 'SQL_ASCII' LOCALE 'C';
});

# ---------------------------------------------------------------- UTF-8, C
$node->safe_psql('c_utf8', q{
  CREATE EXTENSION authctx;
  SELECT authctx.set_password(authctx.create_user('Émile@x.test'), 'emile password 1');
  SELECT authctx.set_password(authctx.create_user('jérôme@x.test'), 'jerome password 1');
  SELECT authctx.create_user('Straße@x.test');
});
is(ask('c_utf8', q{SELECT lower('É') = 'É'}), 't', 'C ctype: lower() leaves É alone');
is(ask('c_utf8', q{SELECT authctx.create_user('émile@x.test')}), 'error 23505',
	'C collation: émile is Émile');
is(ask('c_utf8', q{SELECT authctx.create_user(normalize('jérôme@x.test', NFD))}), 'error 23505',
	'the NFD spelling of an NFC address is the same address');
is(ask('c_utf8', q{SELECT authctx.create_user(normalize('JÉRÔME@X.TEST', NFD))}), 'error 23505',
	'and in capitals too');
is(ask('c_utf8', q{SELECT authctx.create_user('STRASSE@X.TEST')}), 'error 23505',
	'full case folding: STRASSE is Straße');
my $other = ask('c_utf8', q{SELECT authctx.create_user('other@x.test')});
is(ask('c_utf8', qq{SELECT authctx.set_email('$other', normalize('ÉMILE\@X.TEST', NFD))}), 'error 23505',
	'set_email keeps the rule');
is(ask('c_utf8', q{SELECT count(*) FROM authctx.users}), '4', 'no duplicate account was made');
is(ask('c_utf8', q{SELECT (authctx.login(normalize('JÉRÔME@x.TEST', NFD), 'jerome password 1')).session_id IS NOT NULL}),
	't', 'login with another spelling finds the account');
is(ask('c_utf8', q{SELECT authctx.verify_password('ÉMILE@X.TEST', 'emile password 1') =
                        (SELECT id FROM authctx.users WHERE email = 'Émile@x.test')}),
	't', 'verify_password too');
is(ask('c_utf8', q{SELECT email FROM authctx.users WHERE email LIKE 'J%' OR email LIKE 'j%'}),
	'jérôme@x.test', 'the address is stored as it was given');

# ---------------------------------------------------------------- LATIN1
$node->safe_psql('latin1', q{
  CREATE EXTENSION authctx;
  SELECT authctx.set_password(authctx.create_user('Émile@x.test'), 'emile password 1');
});
is(ask('latin1', q{SELECT authctx.create_user('ÉMILE@X.TEST')}), 'error 23505',
	'LATIN1: the same rule (keyed in UTF-8)');
is(ask('latin1', q{SELECT authctx.create_user('µ@x.test') IS NOT NULL}), 't',
	'an address whose folded form is not LATIN1 (µ folds to Greek μ) is accepted');
is(ask('latin1', q{SELECT (authctx.login('émile@X.test', 'emile password 1')).session_id IS NOT NULL}),
	't', 'LATIN1: login with another spelling');

# ---------------------------------------------------------------- SQL_ASCII
$node->safe_psql('ascii', q{
  CREATE EXTENSION authctx;
  SELECT authctx.create_user('émile@x.test');
});
$node->safe_psql('ascii', q{SELECT authctx.create_user('ÿves@x.test')});
is(ask('ascii', q{SELECT lower('Ÿ') = 'Ÿ'}), 't', 'SQL_ASCII: lower() leaves Ÿ alone');
is(ask('ascii', q{SELECT authctx.create_user('ŸVES@x.test')}), 'error 23505',
	'SQL_ASCII: UTF-8 addresses follow the same rule (Ÿ folds to ÿ)');
is(ask('ascii', q{SELECT authctx.create_user(convert_from('\xff6d696c6540782e74657374'::bytea, 'SQL_ASCII'))}),
	'error 22021', 'SQL_ASCII: an address that is not UTF-8 is refused (22021)');

# ---------------------------------------------------------------- update
$node->safe_psql('postgres', q{CREATE DATABASE up TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'});
$node->safe_psql('up', q{
  CREATE EXTENSION authctx VERSION '0.1.0';
  SELECT authctx.create_user('jérôme@x.test');
  SELECT authctx.create_user(normalize('jérôme@x.test', NFD));
  SELECT authctx.create_user('Émile@x.test');
  SELECT authctx.create_user('émile@x.test');
  SELECT authctx.create_user('zoe@x.test');
});
is(ask('up', q{SELECT count(*) FROM authctx.users}), '5', '0.1.0 told the spellings apart');
# (and, as 0.1.0's cleanup() did to an idle session, the session row of a
# login whose refresh token still works is gone)
$node->safe_psql('up', q{
  SELECT authctx.set_password(id, 'zoe password 1') FROM authctx.users WHERE email = 'zoe@x.test';
  CREATE TABLE zoe AS SELECT r.* FROM authctx.login('zoe@x.test', 'zoe password 1') r;
  DELETE FROM authctx.sessions WHERE id = (SELECT session_id FROM zoe);
});
my ($rc, $out, $err) = $node->psql('up', 'ALTER EXTENSION authctx UPDATE');
isnt($rc, 0, 'the update stops');
like($err, qr/some users share an email/, 'saying why');
my @groups = split /\n/, $node->safe_psql('up', q{
  SELECT string_agg(id::text, ', ' ORDER BY created_at, id) FROM authctx.users
   WHERE email <> 'zoe@x.test' GROUP BY left(email, 1) = 'j' ORDER BY 1});
is(scalar(@groups), 2, 'two groups of users share an address');
for my $g (@groups)
{
	like($err, qr/\Q$g\E/, "the message names the group $g");
}
is(ask('up', q{SELECT extversion FROM pg_extension WHERE extname = 'authctx'}), '0.1.0', 'still at 0.1.0');
is(ask('up', q{SELECT count(*) FROM authctx.users}), '5', 'nothing was lost');
$node->safe_psql('up', q{
  SELECT authctx.set_email(id, 'jerome.nfd@x.test') FROM authctx.users WHERE email = normalize('jérôme@x.test', NFD);
  SELECT authctx.set_email(id, 'emile.two@x.test') FROM authctx.users WHERE email = 'émile@x.test';
});
($rc, $out, $err) = $node->psql('up', 'ALTER EXTENSION authctx UPDATE');
is($rc, 0, 'once told apart, the update goes through') or diag($err);
is(ask('up', q{SELECT authctx.create_user(normalize('JÉRÔME@x.test', NFD))}), 'error 23505',
	'and the new rule holds');
is(ask('up', q{SELECT count(*) FROM authctx.users}), '5', 'with every user');
is(ask('up', q{SELECT count(*) FROM zoe z, authctx.list_sessions((SELECT id FROM authctx.users WHERE email = 'zoe@x.test')) s
                WHERE s.session_id = z.session_id}), '1',
	'a family whose session row 0.1.0 had deleted is listed again (a revoked placeholder row)');
is(ask('up', q{SELECT authctx.revoke_session(session_id) FROM zoe}), 't', 'and revoke_session reaches it');
is(ask('up', q{SELECT authctx.refresh(refresh_token::text) FROM zoe}), 'error 28000', 'its refresh token is revoked');

$node->stop;
done_testing();
