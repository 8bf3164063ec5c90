# The shared-memory session cache under pressure: a cache of 64 entries,
# 1,400 tokens (sessions and API keys of 60 users in two tenants), 16
# pgbench clients authenticating for a bounded time (half of them on a
# hot set that fits the cache, half anywhere, half naming the tenant) while
# a revoker revokes sessions, API keys and now and then all of a user's
# sessions.  Eviction, fill and invalidation run concurrently.  Checked:
#   - no probe is ever accepted for a token whose revocation had committed
#     before the probe began, and every accepted probe publishes the
#     token's own user and tenant; no probe refuses a token that was not
#     revoked (no client ever fails: pgbench would abort it);
#   - the counters of authctx._cache_stats() add up: every auth_begin is
#     exactly one hit or one miss, entries never exceed the capacity, the
#     cache evicted and served hits;
#   - afterwards, in quiet, every token's answer is the tables' answer,
#     cold and from the cache, with and without naming the tenant.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seconds = 8;
my $node = PostgreSQL::Test::Cluster->new('cache_pressure');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
authctx.cache_size = 64
authctx.last_seen_interval = 2s
authctx.cleanup_interval = 0
max_connections = 40
max_worker_processes = 16
log_statement = none
});
$node->start;

# tk: the tokens, with their user and tenant; rv: tokens whose revocation
# committed (written in the revoking transaction itself); bad: what the
# probes saw wrong.
$node->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  CREATE ROLE app LOGIN IN ROLE authctx_app;
  CREATE TABLE tk (i int PRIMARY KEY, kind "char", t text, id uuid, user_n int, user_id uuid,
                   tenant_id uuid, slug text);
  CREATE TABLE rv (i int PRIMARY KEY);
  CREATE TABLE bad (i int, what text, at timestamptz DEFAULT clock_timestamp());
  GRANT SELECT ON tk, rv TO app;
  GRANT INSERT ON bad TO app;
  DO $$
  DECLARE
    tids uuid[] := '{}';
    uids uuid[] := '{}';
    tid uuid;
    uid uuid;
    tok authctx.token;
  BEGIN
    FOR n IN 1..2 LOOP
      INSERT INTO authctx.tenants (slug) VALUES ('t' || n) RETURNING id INTO tid;
      tids := tids || tid;
    END LOOP;
    FOR u IN 1..60 LOOP
      INSERT INTO authctx.users (email) VALUES ('u' || u || '@pressure.test') RETURNING id INTO uid;
      INSERT INTO authctx.memberships VALUES (tids[1 + u % 2], uid, 'member');
      uids := uids || uid;
    END LOOP;
    FOR n IN 1..1400 LOOP
      IF n <= 1200 THEN
        tok := authctx._token_new('session');
        INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier, expires_at)
        VALUES (authctx._token_id(tok), uids[1 + n % 60], tids[1 + (1 + n % 60) % 2],
                gen_random_uuid(), authctx._token_verifier(tok), clock_timestamp() + interval '1 hour');
      ELSE
        tok := authctx._token_new('api_key');
        INSERT INTO authctx.api_keys (id, user_id, tenant_id, name, scopes, verifier)
        VALUES (authctx._token_id(tok), uids[1 + n % 60], tids[1 + (1 + n % 60) % 2], 'k' || n,
                '{read}', authctx._token_verifier(tok));
      END IF;
      INSERT INTO tk VALUES (n, CASE WHEN n <= 1200 THEN 's' ELSE 'k' END, tok::text,
                             authctx._token_id(tok), 1 + n % 60, uids[1 + n % 60],
                             tids[1 + (1 + n % 60) % 2], 't' || (1 + (1 + n % 60) % 2));
    END LOOP;
  END $$;

  -- One authentication, as the application role.  rv is read first: a
  -- token found there was revoked by a transaction that had committed
  -- before auth_begin began, and must be refused; an accepted token must
  -- publish its own user and tenant; a refused token must be in rv after
  -- the call.
  CREATE FUNCTION probe(p_i int, p_named boolean) RETURNS boolean LANGUAGE plpgsql AS $$
  DECLARE
    r tk;
    was_revoked boolean;
    ok boolean;
  BEGIN
    SELECT * INTO STRICT r FROM tk WHERE tk.i = p_i;
    was_revoked := EXISTS (SELECT FROM rv WHERE rv.i = p_i);
    BEGIN
      IF p_named THEN
        PERFORM auth_begin(r.t, r.slug);
      ELSE
        PERFORM auth_begin(r.t);
      END IF;
      ok := true;
    EXCEPTION WHEN invalid_authorization_specification THEN
      ok := false;
    END;
    IF ok AND was_revoked THEN
      INSERT INTO bad (i, what) VALUES (p_i, 'revoked token accepted');
    ELSIF ok AND (authctx.user_id() IS DISTINCT FROM r.user_id
                  OR authctx.tenant_id() IS DISTINCT FROM r.tenant_id) THEN
      INSERT INTO bad (i, what) VALUES (p_i, 'wrong context');
    ELSIF NOT ok AND NOT EXISTS (SELECT FROM rv WHERE rv.i = p_i) THEN
      INSERT INTO bad (i, what) VALUES (p_i, 'live token refused');
    END IF;
    RETURN ok;
  END $$;
  GRANT EXECUTE ON FUNCTION probe(int, boolean) TO app;

  -- Revoke token p_i (its session or API key), or with p_user every
  -- session of its user, marking them in the same transaction.
  CREATE FUNCTION revoke_one(p_i int, p_user boolean) RETURNS void LANGUAGE plpgsql AS $$
  DECLARE
    r tk;
  BEGIN
    SELECT * INTO STRICT r FROM tk WHERE tk.i = p_i;
    IF p_user THEN
      PERFORM authctx.revoke_user_sessions(r.user_id);
      INSERT INTO rv SELECT i FROM tk WHERE user_n = r.user_n AND kind = 's' ON CONFLICT DO NOTHING;
    ELSIF r.kind = 's' THEN
      PERFORM authctx.revoke_session(r.id);
      INSERT INTO rv VALUES (p_i) ON CONFLICT DO NOTHING;
    ELSE
      PERFORM authctx.revoke_api_key(r.id);
      INSERT INTO rv VALUES (p_i) ON CONFLICT DO NOTHING;
    END IF;
  END $$;

  -- Every token, quietly: the accepted ones, named or not.
  CREATE FUNCTION sweep(p_named boolean) RETURNS text LANGUAGE plpgsql AS $$
  DECLARE
    ok int[] := '{}';
  BEGIN
    FOR n IN 1..1400 LOOP
      IF probe(n, p_named) THEN
        ok := ok || n;
      END IF;
    END LOOP;
    RETURN array_to_string(ok, ',');
  END $$;
  GRANT EXECUTE ON FUNCTION sweep(boolean) TO app;
});

my $dir = PostgreSQL::Test::Utils::tempdir();
sub script
{
	my ($name, $text) = @_;
	open my $fh, '>', "$dir/$name" or die;
	print $fh $text;
	close $fh;
	return "$dir/$name";
}
my $probe = script('probe.sql', q{
\set i CASE WHEN random(0, 1) = 1 THEN random(1, 40) ELSE random(1, 1400) END
\set named random(0, 1)
SELECT probe(:i, :named = 1);
});
my $revoke = script('revoke.sql', q{
\set i random(41, 1400)
SELECT revoke_one(:i, false);
});
my $revoke_user = script('revoke_user.sql', q{
\set i random(1, 1400)
SELECT revoke_one(:i, true);
});

my $stats_sql = q{SELECT hits, misses, entries, member_hits, member_misses, evictions, capacity
                    FROM authctx._cache_stats()};
my @before = split /\|/, $node->safe_psql('postgres', $stats_sql);

# the storm: 16 authenticating clients, one revoker (about 50 a second,
# one in thirty of them all of a user's sessions), for $seconds seconds
local $ENV{PGHOST} = $node->host;
local $ENV{PGPORT} = $node->port;
my ($pout, $perr, $rout, $rerr) = ('', '', '', '');
my $probes = IPC::Run::start(
	[ 'pgbench', '-n', '-U', 'app', '-c', '16', '-j', '2', '-T', $seconds, '-f', $probe, 'postgres' ],
	'>', \$pout, '2>', \$perr);
my $revoker = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '1', '-R', '50', '-T', $seconds, '-f', "$revoke\@29", '-f', "$revoke_user\@1", 'postgres' ],
	'>', \$rout, '2>', \$rerr);
ok($probes->finish, 'the 16 authenticating clients ran to the end without an error') or diag($perr);
ok($revoker->finish, 'the revoker ran to the end without an error') or diag($rerr);
my ($calls) = $pout =~ /number of transactions actually processed: (\d+)/;
my ($revocations) = $rout =~ /number of transactions actually processed: (\d+)/;
note("$calls authentications, $revocations revocations in $seconds s");
cmp_ok($calls, '>', 1000, "the clients authenticated ($calls times)");
cmp_ok($revocations, '>', 50, "while the revoker revoked ($revocations times)");

is($node->safe_psql('postgres', q{SELECT coalesce(string_agg(what || ' ' || i, ', '), '') FROM (SELECT * FROM bad ORDER BY at LIMIT 10) b}),
	'', 'no revoked token accepted, no wrong context, no live token refused');

my @after = split /\|/, $node->safe_psql('postgres', $stats_sql);
my ($hits, $misses, $entries, $mhits, $mmisses, $evictions, $capacity) =
  map { $after[$_] - ($_ == 2 || $_ == 6 ? 0 : $before[$_]) } 0 .. 6;
is($hits + $misses, $calls, "every auth_begin counted exactly once as a hit ($hits) or a miss ($misses)");
cmp_ok($entries, '<=', $capacity, "entries ($entries) within the capacity ($capacity)");
cmp_ok($evictions, '>', 0, "the cache evicted ($evictions)");
cmp_ok($hits, '>', 0, 'the hot set was served from the cache');
cmp_ok($mhits + $mmisses, '<=', $calls, "membership lookups ($mhits hits, $mmisses misses) at most one per call");

# the marks agree with the tables, and in quiet every answer is theirs
my $live = $node->safe_psql('postgres', q{
  SELECT string_agg(tk.i::text, ',' ORDER BY tk.i) FROM tk
    LEFT JOIN authctx.sessions s ON tk.kind = 's' AND s.id = tk.id
    LEFT JOIN authctx.api_keys k ON tk.kind = 'k' AND k.id = tk.id
   WHERE coalesce(s.revoked_at, k.revoked_at) IS NULL});
is($node->safe_psql('postgres', q{SELECT string_agg(i::text, ',' ORDER BY i) FROM tk WHERE i NOT IN (SELECT i FROM rv)}),
	$live, 'the revoker marked exactly the revoked tokens');
for my $pass ('first pass', 'second pass')
{
	is($node->safe_psql('postgres', 'SELECT sweep(false)', extra_params => [ '-U', 'app' ]), $live,
		"afterwards, $pass: exactly the live tokens authenticate");
	is($node->safe_psql('postgres', 'SELECT sweep(true)', extra_params => [ '-U', 'app' ]), $live,
		"afterwards, $pass: and the same naming their tenant");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM bad}), '0', 'and no probe saw anything wrong');
@after = split /\|/, $node->safe_psql('postgres', $stats_sql);
cmp_ok($after[2], '<=', $after[6], 'entries still within the capacity');

$node->stop;
done_testing();
