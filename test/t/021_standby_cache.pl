# The shared-memory cache on a hot standby (preloaded there): it serves
# hits, and every revocation replayed from the primary (revoke_session,
# logout, disable_user, membership removal, an API key's revocation, an
# issuer's key-set change) is honoured by the next auth_begin on the
# standby, in a connection that had the entry cached, in one that sat idle
# meanwhile and in one born after the replay; a refill racing replay never
# revives a revoked session; the promoted standby keeps working and
# honours revocations.  Run with the primary preloaded and not preloaded
# (the standby's cache must be invalidated either way).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $fixtures = slurp_file("$ENV{TESTDIR}/test/fixtures/jwt/fixtures.sql");
my $iss = 'https://rotate.example.com';

for my $mode ('preload', 'nopreload')
{
	my $primary = PostgreSQL::Test::Cluster->new("sbc_primary_$mode");
	$primary->init(allows_streaming => 1);
	$primary->append_conf('postgresql.conf', join("\n",
		($mode eq 'preload' ? "shared_preload_libraries = 'authctx'" : ''),
		'max_worker_processes = 16', 'authctx.cleanup_interval = 0', ''));
	$primary->start;
	my @race = map { "race_$_" } (1 .. 20);
	$primary->safe_psql('postgres', $fixtures . qq{
	  SET client_min_messages = warning;
	  CREATE EXTENSION authctx;
	  CREATE ROLE app LOGIN;
	  GRANT authctx_app TO app;
	  SELECT authctx.create_tenant('acme');
	  SELECT authctx.add_member('acme', authctx.create_user(u || '\@acme.test'))
	    FROM unnest('{alice,bob,carol,dave,erin,frank,gina,hal}'::text[]) u;
	  CREATE TABLE tok (name text PRIMARY KEY, value text);
	  GRANT SELECT ON tok TO app;
	  CREATE FUNCTION uid(u text) RETURNS uuid LANGUAGE sql
	    AS \$\$ SELECT id FROM authctx.users WHERE email = u || '\@acme.test' \$\$;
	  INSERT INTO tok SELECT 'revoke', authctx.create_session(uid('alice'));
	  INSERT INTO tok SELECT 'logout', authctx.create_session(uid('alice'));
	  INSERT INTO tok SELECT 'disable', authctx.create_session(uid('bob'));
	  INSERT INTO tok SELECT 'member', authctx.create_session(uid('carol'));
	  INSERT INTO tok SELECT 'key', authctx.create_api_key(uid('dave'), 'acme', 'ci');
	  INSERT INTO tok SELECT 'sync', authctx.create_session(uid('erin'));
	  INSERT INTO tok SELECT 'newborn', authctx.create_session(uid('frank'));
	  INSERT INTO tok SELECT 'paused', authctx.create_session(uid('frank'));
	  INSERT INTO tok SELECT 'promo', authctx.create_session(uid('gina'));
	  INSERT INTO tok SELECT 'after', authctx.create_session(uid('gina'));
	  INSERT INTO tok SELECT 'race_' || g, authctx.create_session(uid('hal')) FROM generate_series(1, 20) g;
	  INSERT INTO tok SELECT 'jwt_' || name, token FROM jwt_token WHERE name = 'rotate_old';
	  SELECT authctx.add_member('acme', authctx.create_user('rot\@example.com'));
	  SELECT authctx.link_identity(id, '$iss', 'user-1') FROM authctx.users WHERE email = 'rot\@example.com';
	  CREATE TABLE jwks AS SELECT name, jwks FROM jwt_key_set WHERE name LIKE 'rotate_%';
	  SELECT authctx.add_issuer('$iss', 'rot', (SELECT jwks FROM jwks WHERE name = 'rotate_old'));
	  -- the outcome of auth_begin with a named token: ok, or the SQLSTATE
	  CREATE FUNCTION try(n text) RETURNS text LANGUAGE plpgsql AS \$\$
	  BEGIN
	    PERFORM auth_begin((SELECT value FROM public.tok WHERE name = n));
	    RETURN 'ok';
	  EXCEPTION WHEN OTHERS THEN
	    RETURN SQLSTATE;
	  END \$\$;
	  -- for secs seconds, call try() on the race tokens in turn; per token,
	  -- the replay position read before the last call that accepted it
	  CREATE FUNCTION race(secs float8) RETURNS TABLE (n text, last_ok pg_lsn, oks int)
	  LANGUAGE plpgsql AS \$\$
	  DECLARE
	    stop timestamptz := clock_timestamp() + secs * interval '1 s';
	    l pg_lsn;
	    i int := 0;
	    t text;
	    best pg_lsn[] := array_fill(NULL::pg_lsn, ARRAY[20]);
	    cnt int[] := array_fill(0, ARRAY[20]);
	  BEGIN
	    WHILE clock_timestamp() < stop LOOP
	      i := i % 20 + 1;
	      l := pg_last_wal_replay_lsn();
	      IF public.try('race_' || i) = 'ok' THEN
	        best[i] := l;
	        cnt[i] := cnt[i] + 1;
	      END IF;
	    END LOOP;
	    RETURN QUERY SELECT 'race_' || g, best[g], cnt[g] FROM generate_series(1, 20) g;
	  END \$\$;
	});

	$primary->backup('b1');
	my $standby = PostgreSQL::Test::Cluster->new("sbc_standby_$mode");
	$standby->init_from_backup($primary, 'b1', has_streaming => 1);
	$standby->append_conf('postgresql.conf',
		"shared_preload_libraries = 'authctx'\nmax_worker_processes = 16\nauthctx.cleanup_interval = 0\n"
		  # the listener runs rounds only when a backend asks for one
		  . "authctx.debug_cache_listener_nap = '1h'\n");
	$standby->start;
	$primary->wait_for_catchup($standby, 'replay');

	my $hits = sub {
		return $_[0]->safe_psql('postgres', 'SELECT hits + member_hits FROM authctx._cache_stats()');
	};
	my $catchup = sub { $primary->wait_for_catchup($standby, 'replay'); };

	# Call try($name) in connection $c until the standby counts a hit.
	my $until_hit = sub {
		my ($node, $c, $name) = @_;
		for (1 .. 100)
		{
			my $h0 = $hits->($node);
			my $r = $c->query_safe("SELECT public.try('$name')");
			return $r if $r ne 'ok';
			return 'hit' if $hits->($node) > $h0;
			usleep(100_000);
		}
		return 'no hit';
	};

	my @kinds = (
		[ 'revoke', q{SELECT authctx.revoke_session(authctx._token_id(value::authctx.token)) FROM tok WHERE name = 'revoke'} ],
		[ 'logout', q{SELECT authctx.logout(value) FROM tok WHERE name = 'logout'} ],
		[ 'disable', q{SELECT authctx.disable_user(uid('bob'))} ],
		[ 'member', q{SELECT authctx.remove_member('acme', uid('carol'))} ],
		[ 'key', q{SELECT authctx.revoke_api_key(authctx._token_id(value::authctx.token)) FROM tok WHERE name = 'key'} ],
		[ 'jwt_rotate_old', qq{SELECT authctx.set_issuer_keys('$iss', (SELECT jwks FROM jwks WHERE name = 'rotate_new'))} ]);

	# Two connections: one keeps using the cache, one sits idle.
	my $busy = $standby->background_psql('postgres', extra_params => [ '-U', 'app' ]);
	my $idle = $standby->background_psql('postgres', extra_params => [ '-U', 'app' ]);
	for my $k (@kinds)
	{
		is($until_hit->($standby, $busy, $k->[0]), 'hit', "$mode: $k->[0]: served from the standby's cache");
		is($until_hit->($standby, $idle, $k->[0]), 'hit', "$mode: $k->[0]: in the idle connection too");
	}
	for my $k (@kinds)
	{
		$primary->safe_psql('postgres', $k->[1]);
		$catchup->();
		isnt($busy->query_safe("SELECT public.try('$k->[0]')"), 'ok', "$mode: $k->[0] on the primary: refused on the standby once replayed");
	}
	for my $k (@kinds)
	{
		isnt($idle->query_safe("SELECT public.try('$k->[0]')"), 'ok', "$mode: $k->[0]: refused in the connection that sat idle");
	}
	is($busy->query_safe("SELECT public.try('sync')"), 'ok', "$mode: an unrelated session still works");

	# A backend born after the replay, while the others sit idle.
	is($until_hit->($standby, $busy, 'newborn'), 'hit', "$mode: newborn's token cached");
	$primary->safe_psql('postgres', q{SELECT authctx.revoke_session(authctx._token_id(value::authctx.token)) FROM tok WHERE name = 'newborn'});
	$catchup->();
	is($standby->safe_psql('postgres', q{SELECT string_agg(public.try('newborn'), ' ') FROM generate_series(1, 5)},
			extra_params => [ '-U', 'app' ]),
		join(' ', ('28000') x 5), "$mode: a backend born after the replay refuses it");
	my $nb = $standby->background_psql('postgres', extra_params => [ '-U', 'app' ]);
	is($until_hit->($standby, $nb, 'sync'), 'hit', "$mode: the new backend reads the cache once the listener caught up");
	is($nb->query_safe("SELECT public.try('newborn')"), '28000', "$mode: and still refuses the revoked session");
	$nb->quit;

	# Replay paused: the standby still accepts (correctly: not replayed yet)
	# and refills; once replayed, the refill does not revive the session.
	is($until_hit->($standby, $busy, 'paused'), 'hit', "$mode: paused's token cached");
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
	$primary->safe_psql('postgres', q{SELECT authctx.revoke_session(authctx._token_id(value::authctx.token)) FROM tok WHERE name = 'paused'});
	is($busy->query_safe("SELECT public.try('paused')"), 'ok', "$mode: replay paused: not revoked yet on the standby");
	is($standby->safe_psql('postgres', q{SELECT public.try('paused')}, extra_params => [ '-U', 'app' ]),
		'ok', "$mode: replay paused: a new backend refills");
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
	$catchup->();
	is($busy->query_safe("SELECT public.try('paused')"), '28000', "$mode: replay resumed: refused");
	is($standby->safe_psql('postgres', q{SELECT public.try('paused')}, extra_params => [ '-U', 'app' ]),
		'28000', "$mode: replay resumed: refused in a new backend");

	# A stress loop of auth_begin on the standby while the primary revokes.
	is($until_hit->($standby, $busy, $_), 'hit', "$mode: $_ cached") for @race[ 0, 19 ];
	my $h0 = $hits->($standby);
	my $racer = $standby->background_psql('postgres', extra_params => [ '-U', 'app' ]);
	$racer->query_until(qr/started/, "\\echo started\nSELECT n, last_ok, oks FROM public.race(6);\n\\echo raced\n");
	my %revoked_at;
	usleep(500_000);
	for my $n (@race)
	{
		$primary->safe_psql('postgres', qq{SELECT authctx.revoke_session(authctx._token_id(value::authctx.token)) FROM tok WHERE name = '$n'});
		$revoked_at{$n} = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
		usleep(100_000);
	}
	my $out = $racer->query_until(qr/raced/, '');
	$racer->quit;
	my ($stale, $accepts) = (0, 0);
	for my $line (split /\n/, $out)
	{
		my ($n, $lsn, $oks) = split /\|/, $line;
		next unless defined $oks && $n =~ /^race_/;
		$accepts += $oks;
		next if $lsn eq '';
		$stale++ if $standby->safe_psql('postgres', "SELECT '$lsn'::pg_lsn >= '$revoked_at{$n}'::pg_lsn") eq 't';
	}
	note("$mode: race: $accepts accepts, " . ($hits->($standby) - $h0) . " hits");
	cmp_ok($accepts, '>', 0, "$mode: the race loop was accepted before the revocations");
	cmp_ok($hits->($standby) - $h0, '>', 0, "$mode: and served from the cache");
	is($stale, 0, "$mode: 0 accepts after a revocation's replay");

	# Promotion: a revocation replayed just before it is still honoured,
	# and the new primary's cache works and honours new revocations.
	is($until_hit->($standby, $busy, 'promo'), 'hit', "$mode: promo's token cached");
	$primary->safe_psql('postgres', q{SELECT authctx.revoke_session(authctx._token_id(value::authctx.token)) FROM tok WHERE name = 'promo'});
	$catchup->();
	$standby->promote;
	$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
	is($busy->query_safe("SELECT public.try('promo')"), '28000', "$mode: promoted: the revocation replayed before promotion honoured");
	is($standby->safe_psql('postgres', q{SELECT public.try('promo')}, extra_params => [ '-U', 'app' ]),
		'28000', "$mode: promoted: and in a new backend");
	is($until_hit->($standby, $busy, 'after'), 'hit', "$mode: promoted: the cache serves hits");
	$standby->safe_psql('postgres', q{SELECT authctx.revoke_session(authctx._token_id(value::authctx.token)) FROM tok WHERE name = 'after'});
	is($busy->query_safe("SELECT public.try('after')"), '28000', "$mode: promoted: a revocation on the new primary honoured");

	$busy->quit;
	$idle->quit;
	$standby->stop;
	$primary->stop;
}

done_testing();
