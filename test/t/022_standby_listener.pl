# The standby cache's listener and the primary's message budget (found by
# the adversarial review of the standby cache):
#  1. a listener that restarts (or starts after backends connected) joins
#     the invalidation queue at its end: a revocation's message queued while
#     it was gone, which the idle backends connected then never read, must
#     not leave a stale entry that a newborn backend trusts (the listener
#     makes everything stale when it starts);
#  2. a bulk revocation sends a bounded number of invalidation messages
#     (one for the database beyond CACHE_SEND_MAX slots), not one per row.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $primary = PostgreSQL::Test::Cluster->new("lr_primary");
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'authctx'\nmax_worker_processes = 16\nauthctx.cleanup_interval = 0\n");
$primary->start;
$primary->safe_psql('postgres', qq{
  SET client_min_messages = warning;
  CREATE EXTENSION authctx;
  CREATE ROLE app LOGIN;
  GRANT authctx_app TO app;
  SELECT authctx.create_tenant('acme');
  SELECT authctx.add_member('acme', authctx.create_user(u || '\@acme.test'))
    FROM unnest('{alice,bob}'::text[]) u;
  CREATE TABLE tok (name text PRIMARY KEY, value text);
  GRANT SELECT ON tok TO app;
  CREATE FUNCTION uid(u text) RETURNS uuid LANGUAGE sql
    AS \$\$ SELECT id FROM authctx.users WHERE email = u || '\@acme.test' \$\$;
  INSERT INTO tok SELECT 'victim', authctx.create_session(uid('alice'));
  INSERT INTO tok SELECT 'other', authctx.create_session(uid('bob'));
  CREATE FUNCTION try(n text) RETURNS text LANGUAGE plpgsql AS \$\$
  BEGIN
    PERFORM auth_begin((SELECT value FROM public.tok WHERE name = n));
    RETURN 'ok';
  EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
  END \$\$;
});
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new("lr_standby");
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->append_conf('postgresql.conf',
	"shared_preload_libraries = 'authctx'\nmax_worker_processes = 16\nauthctx.cleanup_interval = 0\nauthctx.debug_cache_listener_nap = '1h'\n");
$standby->start;
$primary->wait_for_catchup($standby, 'replay');

my $hits = sub { $_[0]->safe_psql('postgres', 'SELECT hits + member_hits FROM authctx._cache_stats()') };
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
my $lpid = sub { $standby->safe_psql('postgres', q{SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'authctx cache listener'}) };

my $idle = $standby->background_psql('postgres', extra_params => [ '-U', 'app' ]);
is($until_hit->($standby, $idle, 'victim'), 'hit', 'victim cached by a connection that then sits idle');

my $old = $lpid->();
isnt($old, '0', "listener running ($old)");
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$primary->safe_psql('postgres', q{SELECT authctx.revoke_session(authctx._token_id(value::authctx.token)) FROM tok WHERE name = 'victim'});
$standby->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$primary->wait_for_catchup($standby, 'replay');
note('replayed at ' . $standby->safe_psql('postgres', 'SELECT pg_last_wal_replay_lsn()'));
$standby->poll_query_until('postgres', qq{SELECT coalesce(max(pid), 0) NOT IN (0, $old) FROM pg_stat_activity WHERE backend_type = 'authctx cache listener'});
note('new listener ' . $lpid->());

my $nb = $standby->background_psql('postgres', extra_params => [ '-U', 'app' ]);
is($until_hit->($standby, $nb, 'other'), 'hit', 'newborn backend synced');
is($nb->query_safe("SELECT public.try('victim')"), '28000', 'revoked session refused on the standby after replay');
is($standby->safe_psql('postgres', "SELECT public.try('victim')", extra_params => [ '-U', 'app' ]), '28000', 'fresh backend, first call (tables)');
$nb->quit;
$idle->quit;
$standby->stop;
$primary->stop;


my $p = PostgreSQL::Test::Cluster->new("lr_msgs");
$p->init(allows_streaming => 1);
$p->append_conf('postgresql.conf', "authctx.cleanup_interval = 0\n");
$p->start;
$p->safe_psql('postgres', q{
  SET client_min_messages = warning;
  CREATE EXTENSION authctx;
  SELECT authctx.create_tenant('acme');
  SELECT authctx.add_member('acme', authctx.create_user('u' || g || '@acme.test')) FROM generate_series(1, 3) g;
  SELECT authctx.create_session((SELECT id FROM authctx.users WHERE email = 'u1@acme.test')) FROM generate_series(1, 700);
});
note('wal_level=' . $p->safe_psql('postgres', 'SHOW wal_level') . ' preload=' . $p->safe_psql('postgres', 'SHOW shared_preload_libraries'));
my $start = $p->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
$p->safe_psql('postgres', q{SELECT authctx.revoke_user_sessions((SELECT id FROM authctx.users WHERE email = 'u1@acme.test'))});
my $end = $p->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
my ($out, $err) = run_command([ 'pg_waldump', '-p', $p->data_dir . '/pg_wal', '-s', $start, '-e', $end, '-r', 'Transaction' ]);
my ($line) = grep { /COMMIT/ } split /\n/, $out;
my $n = () = ($line // '') =~ /relcache/g;
my @ids = ($line // '') =~ /relcache (\d+)/g;
note('commit record: ' . length($line // '') . ' chars, relcache invalidations: ' . $n . ', first ids: ' . join(',', @ids[0 .. 4]));
cmp_ok($n, '<=', 32, 'a bulk revocation sends at most CACHE_SEND_MAX invalidations');
cmp_ok($n, '>=', 1, 'and still sends one, for its database');

$p->stop;
done_testing();
