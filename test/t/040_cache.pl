# The shared-memory session cache under pressure and across servers: a tiny
# cache (authctx.cache_size = 64) evicts and still answers exactly as the
# tables do, revocations included; a hot standby fills its own cache and
# still honours what the primary revoked (021_standby_cache.pl has the
# rest); a restart starts empty; authctx.cache_size = 0 disables it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('cache_primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
authctx.cache_size = 64
});
$node->start;

# 300 sessions of 30 users in one tenant, inserted as the session module
# would; tokens kept in a table the application role can read.
$node->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  CREATE ROLE app LOGIN;
  GRANT authctx_app TO app;
  CREATE TABLE toks (n int PRIMARY KEY, t text, user_n int);
  GRANT SELECT ON toks TO app;
  DO $$
  DECLARE
    tid uuid;
    uids uuid[] := '{}';
    uid uuid;
    tok authctx.token;
  BEGIN
    INSERT INTO authctx.tenants (slug) VALUES ('acme') RETURNING id INTO tid;
    FOR i IN 1..30 LOOP
      INSERT INTO authctx.users (email) VALUES ('u' || i || '@acme.test') RETURNING id INTO uid;
      INSERT INTO authctx.memberships VALUES (tid, uid, 'member');
      uids := uids || uid;
    END LOOP;
    FOR n IN 1..300 LOOP
      tok := authctx._token_new('session');
      INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier, expires_at)
      VALUES (authctx._token_id(tok), uids[1 + n % 30], tid, gen_random_uuid(),
              authctx._token_verifier(tok), clock_timestamp() + interval '1 hour');
      INSERT INTO toks VALUES (n, tok::text, 1 + n % 30);
    END LOOP;
  END $$;
  -- auth_begin each token (as the caller), one statement at a time would be
  -- slow: a function catching each failure is enough, since each call is
  -- its own lookup.
  CREATE FUNCTION try_all(OUT ok int, OUT refused int) LANGUAGE plpgsql AS $$
  DECLARE r record;
  BEGIN
    ok := 0; refused := 0;
    FOR r IN SELECT t FROM toks ORDER BY n LOOP
      BEGIN
        PERFORM auth_begin(r.t);
        ok := ok + 1;
      EXCEPTION WHEN invalid_authorization_specification THEN
        refused := refused + 1;
      END;
    END LOOP;
  END $$;
  GRANT EXECUTE ON FUNCTION try_all() TO app;
});

sub as_app
{
	my ($n, $sql) = @_;
	return $n->safe_psql('postgres', $sql, extra_params => [ '-U', 'app' ]);
}

my $stats = q{SELECT hits, misses, entries, evictions, capacity FROM authctx._cache_stats()};

is(as_app($node, 'SELECT * FROM try_all()'), '300|0', 'all 300 sessions authenticate (cold)');
is(as_app($node, 'SELECT * FROM try_all()'), '300|0', 'all 300 sessions authenticate (evicting)');
my ($hits, $misses, $entries, $evictions, $capacity) =
  split /\|/, $node->safe_psql('postgres', $stats);
is($capacity, 64, 'capacity is authctx.cache_size');
cmp_ok($entries, '<=', $capacity, "entries ($entries) never exceed the capacity");
cmp_ok($evictions, '>', 0, "a full cache evicts ($evictions evictions)");
is($hits + $misses, 600, 'every lookup counted as a hit or a miss');

# A small working set stays cached under the churn of the others.
my $hot = q{
  DO $$ BEGIN
    FOR i IN 1..50 LOOP PERFORM auth_begin((SELECT t FROM toks WHERE n = 7)); END LOOP;
  END $$};
my ($h0) = split /\|/, $node->safe_psql('postgres', $stats);
as_app($node, $hot);
my ($h1) = split /\|/, $node->safe_psql('postgres', $stats);
cmp_ok($h1 - $h0, '>=', 49, 'a hot session is served from the cache');

# Revoke every third session and disable one user while the cache is warm
# and churning: the tables' answer, exactly.
$node->safe_psql('postgres', q{
  UPDATE authctx.sessions s SET revoked_at = clock_timestamp()
    FROM toks WHERE s.id = authctx._token_id(toks.t::authctx.token) AND toks.n % 3 = 0;
  UPDATE authctx.users SET disabled_at = clock_timestamp() WHERE email = 'u5@acme.test';
});
my $expect_ok = $node->safe_psql('postgres',
	q{SELECT count(*) FROM toks WHERE n % 3 <> 0 AND user_n <> 5});
is(as_app($node, 'SELECT ok FROM try_all()'), $expect_ok,
	"after revoking and disabling, exactly the $expect_ok valid sessions authenticate");
is(as_app($node, 'SELECT ok FROM try_all()'), $expect_ok, '... and again, from the cache');

# A hot standby has its own cache and sees the primary's revocations.
$node->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('cache_standby');
$standby->init_from_backup($node, 'b1', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
is(as_app($standby, 'SELECT ok FROM try_all()'), $expect_ok, 'the standby gives the same answers');
cmp_ok($standby->safe_psql('postgres', 'SELECT entries FROM authctx._cache_stats()'),
	'>', 0, 'the standby fills its own cache');
$node->safe_psql('postgres', q{
  UPDATE authctx.sessions s SET revoked_at = clock_timestamp()
    FROM toks WHERE s.id = authctx._token_id(toks.t::authctx.token) AND toks.n = 7});
$node->wait_for_catchup($standby);
my ($rc, $out, $err) = $standby->psql('postgres',
	q{SELECT auth_begin(t) FROM toks WHERE n = 7}, extra_params => [ '-U', 'app' ]);
like($err, qr/authentication failed/, 'a revocation replayed on the standby is honoured');
($rc, $out, $err) = $node->psql('postgres',
	q{SELECT auth_begin(t) FROM toks WHERE n = 7}, extra_params => [ '-U', 'app' ]);
like($err, qr/authentication failed/, 'and on the primary');
$standby->stop;

# A restart starts with an empty cache.
$node->restart;
is($node->safe_psql('postgres', 'SELECT hits + misses + entries FROM authctx._cache_stats()'),
	'0', 'empty after a restart');
is(as_app($node, 'SELECT ok FROM try_all()'), $expect_ok - 1, 'same answers after the restart');

# authctx.cache_size = 0 disables the cache; results do not change.
$node->append_conf('postgresql.conf', "authctx.cache_size = 0\n");
$node->restart;
is(as_app($node, 'SELECT ok FROM try_all()'), $expect_ok - 1, 'same answers without the cache');
is($node->safe_psql('postgres', 'SELECT capacity, hits + misses FROM authctx._cache_stats()'),
	'0|0', 'no cache at all with authctx.cache_size = 0');

$node->stop;
done_testing();
