# External identity providers beyond one server (src/issuer.c,
# src/sql/47_issuer.sql):
#   (a) the issuer registry is configuration that backups keep: both tables
#       are extension configuration tables, so pg_dump / pg_restore carry
#       issuers and keys over, and the restored database verifies the same
#       tokens;
#   (b) a key-set change or an issuer removal on the primary is honoured by
#       a hot standby backend that has the old keys cached: the relcache
#       invalidation travels in the commit record and is replayed there.
# Tokens and key sets: test/fixtures/jwt/fixtures.sql (signed by PyJWT at
# authoring time), valid at $now.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $fixtures = slurp_file("$ENV{TESTDIR}/test/fixtures/jwt/fixtures.sql");
my $now = '2023-11-14 22:30:00+00';

my $primary = PostgreSQL::Test::Cluster->new('issuer_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
max_worker_processes = 16
authctx.cleanup_interval = 0
});
$primary->start;

# the fixtures, in ordinary tables (fixtures.sql makes temporary ones)
$primary->safe_psql('postgres', $fixtures . q{
  CREATE EXTENSION authctx;
  CREATE TABLE fixture_token AS SELECT name, token FROM jwt_token;
  CREATE TABLE fixture_jwks AS SELECT name, jwks FROM jwt_key_set;
  SELECT authctx.add_issuer('https://ed.example.com/', 'api://authctx',
                            (SELECT jwks FROM fixture_jwks WHERE name = 'ed'), 'org');
  SET client_min_messages = warning;
  SELECT authctx.add_issuer('https://sso.example.org/realms/acme', 'authctx',
                            (SELECT jwks FROM fixture_jwks WHERE name = 'keycloak'), 'tenant',
                            '45 seconds');
});

# The reason _jwt_reason gives for fixture token $name, on $node / $db.
sub reason_sql
{
	my ($name) = @_;
	return qq{SELECT authctx._jwt_reason(token, '$now') FROM fixture_token WHERE name = '$name'};
}

my $registry = q{SELECT issuer, audience, key_ids, tenant_claim, leeway,
  created_at, keys_changed_at FROM authctx.list_issuers()};
my $stored = q{SELECT issuer, ordinal, kid, kty, alg, md5(public_key) FROM authctx.issuer_keys
  ORDER BY 1, 2};

is($primary->safe_psql('postgres', reason_sql('ed_ok') . ' UNION ALL ' . reason_sql('rs4096_ok')),
	"ok\nok", 'fixture tokens verify on the primary');

# ---------------------------------------------------------------- (a)
my $dump = $primary->basedir . '/issuer.dump';
$primary->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $primary->connstr('postgres') ],
	'pg_dump of a database with registered issuers');
$primary->safe_psql('postgres', 'CREATE DATABASE restored');
$primary->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $primary->connstr('restored'), $dump ],
	'pg_restore into a new database');
is($primary->safe_psql('restored', $registry), $primary->safe_psql('postgres', $registry),
	'the restored registry equals the original (issuers, audiences, key ids, settings, dates)');
is($primary->safe_psql('restored', $stored), $primary->safe_psql('postgres', $stored),
	'the stored keys are the same bytes');
is($primary->safe_psql('restored',
		reason_sql('ed_ok') . ' UNION ALL ' . reason_sql('rs2048_ok') . ' UNION ALL ' . reason_sql('kid_unknown')),
	"ok\nok\nkey", 'the restored database verifies the same tokens, and refuses the same');
$primary->safe_psql('restored', q{SELECT authctx.remove_issuer('https://ed.example.com/')});
is($primary->safe_psql('restored', reason_sql('ed_ok')), 'issuer', 'and manages its own registry');
is($primary->safe_psql('postgres', reason_sql('ed_ok')), 'ok', 'apart from the original');

# ---------------------------------------------------------------- (b)
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('issuer_standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

my $bg = $standby->background_psql('postgres');
my $pid = $bg->query_safe('SELECT pg_backend_pid()');
is($bg->query_safe(reason_sql('ed_ok')), 'ok', 'a standby backend verifies (and caches the keys)');
is($bg->query_safe(reason_sql('rs2048_ok')), 'ok', 'for two issuers');

# rotation on the primary: the standby backend's next verification sees it
$primary->safe_psql('postgres', q{SELECT authctx.set_issuer_keys('https://ed.example.com/',
  (SELECT jwks FROM fixture_jwks WHERE name = 'rotate_new'))});
$primary->wait_for_catchup($standby);
is($bg->query_safe(reason_sql('ed_ok')), 'key', 'a key removed on the primary is refused on the standby');
is($bg->query_safe(reason_sql('rs2048_ok')), 'ok', 'the other issuer is unaffected');

# removal on the primary
$primary->safe_psql('postgres', q{SELECT authctx.remove_issuer('https://sso.example.org/realms/acme')});
$primary->wait_for_catchup($standby);
is($bg->query_safe(reason_sql('rs2048_ok')), 'issuer', 'an issuer removed on the primary is refused on the standby');

# a change the primary rolled back changes nothing
$primary->safe_psql('postgres', q{BEGIN;
  SELECT authctx.set_issuer_keys('https://ed.example.com/', (SELECT jwks FROM fixture_jwks WHERE name = 'ed'));
  ROLLBACK;});
$primary->safe_psql('postgres', q{SELECT authctx.add_issuer('https://es.example.com', 'authctx-api',
  (SELECT jwks FROM fixture_jwks WHERE name = 'es'))});
$primary->wait_for_catchup($standby);
is($bg->query_safe(reason_sql('ed_ok') . ' UNION ALL ' . reason_sql('es_ok')), "key\nok",
	'a rolled-back change is not seen; a new issuer is');
is($bg->query_safe('SELECT pg_backend_pid()'), $pid, 'all in the same standby backend');
$bg->quit;

$standby->stop;
$primary->stop;
done_testing();
