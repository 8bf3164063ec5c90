# cleanup() on a million expired sessions does not stall concurrent logins:
# it works in slices (a few thousand rows per statement, SKIP LOCKED), and
# logins neither wait for it while it runs nor while its transaction stays
# open afterwards.  AUTHCTX_CLEANUP_ROWS overrides the number of rows.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $rows = $ENV{AUTHCTX_CLEANUP_ROWS} || 1000000;

my $node = PostgreSQL::Test::Cluster->new('cleanup_scale');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
max_worker_processes = 16
authctx.password_memlimit = 8MB
authctx.password_opslimit = 2
authctx.cleanup_interval = 0
fsync = off
synchronous_commit = off
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
});
$node->start;
$node->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  SELECT authctx.set_password(authctx.create_user('scale@example.com'), 'scale password 1');
});

# the fixture: sorted ids and one family keep the load fast; replica role
# skips the foreign-key checks of a million inserts
my $t0 = time;
$node->safe_psql('postgres', qq{
  SET session_replication_role = replica;
  INSERT INTO authctx.sessions (id, user_id, family_id, verifier, created_at, last_seen_at, expires_at)
  SELECT g.id, u.id, '00000000-0000-4000-8000-000000000001', '\\x00'::bytea, now() - interval '3 days',
         now() - interval '3 days', now() - interval '2 days'
    FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $rows) ORDER BY 1) g,
         authctx.users u
   WHERE u.email = 'scale\@example.com';
  VACUUM ANALYZE authctx.sessions;});
note(sprintf('loaded %d expired sessions in %.1fs', $rows, time - $t0));

my $login_sql = q{SELECT (authctx.login('scale@example.com', 'scale password 1')).session_id IS NOT NULL};
sub timed_login
{
	my $start = time;
	my $out = $node->safe_psql('postgres', $login_sql);
	return ($out, time - $start);
}
my ($out, $baseline) = timed_login();
is($out, 't', 'login works');

# cleanup in its own transaction, in the background
my $bg = $node->background_psql('postgres');
$bg->query_until(qr/started/, "\\echo started\nBEGIN;\nSELECT authctx.cleanup() AS removed \\gset\n\\echo done :removed\n");
my $cleanup_started = time;

# logins while the cleanup statement runs
my ($during, $max_during) = (0, 0);
while ($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%authctx.cleanup()%' AND state = 'active' AND pid <> pg_backend_pid()}) eq '1')
{
	my ($ok, $elapsed) = timed_login();
	last if $ok ne 't';
	$during++;
	$max_during = $elapsed if $elapsed > $max_during;
}
my $result = $bg->query_until(qr/done \d+/, '');
my $cleanup_time = time - $cleanup_started;
my ($removed) = $result =~ /done (\d+)/;
note(sprintf('cleanup removed %d rows in %.1fs; %d logins meanwhile, slowest %.2fs, baseline %.2fs',
	$removed, $cleanup_time, $during, $max_during, $baseline));
is($removed, $rows, 'cleanup removed every expired session');
cmp_ok($during, '>=', 3, 'logins completed while cleanup ran');
cmp_ok($max_during, '<', 3, 'no login waited for cleanup');

# and while its transaction is still open, holding its row locks
my ($after_ok, $after_time) = timed_login();
is($after_ok, 't', 'login while cleanup has not committed');
cmp_ok($after_time, '<', 3, 'without waiting');
$bg->query_safe('COMMIT');
$bg->quit;

is($node->safe_psql('postgres', q{SELECT count(*) FROM authctx.sessions WHERE expires_at < now() - interval '1 day'}),
	'0', 'no expired session left');
is($node->safe_psql('postgres', q{SELECT count(*) FROM authctx.list_sessions((SELECT id FROM authctx.users WHERE email = 'scale@example.com'))}),
	$during + 2, 'every login left a live session');

$node->stop;
done_testing();
