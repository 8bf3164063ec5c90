# Issue 18, point 6: reuse detection survives transaction-ID wraparound.
# "Was this spent token spent by my own transaction?" is decided by the
# 64-bit xid recorded when the token was spent (refresh_tokens.spent_xid),
# not by widening a row's 32-bit xmin with the current epoch.  The cluster
# is moved near the wrap with pg_resetwal -x, a refresh token is spent
# there, the xid counter is driven past 2^32, and the spent token is then
# presented again from a transaction that already has an xid: it is a
# reuse (28000), its family is revoked and the reuse audited, and a token
# spent earlier in the same transaction is still told apart (refused
# without a reuse).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('wrap');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'authctx'",
	'max_worker_processes = 16',
	'authctx.password_memlimit = 8MB',
	'authctx.password_opslimit = 1',
	'authctx.cleanup_interval = 0',
	'fsync = off',
	'synchronous_commit = off',
	''));
# Freeze what initdb wrote (its xids would look like the future from near
# the wrap), then move the next xid 65,536 short of the wrap, at a pg_xact
# page boundary (a page holds 32,768 xids), so that the server can start
# there.
$node->start;
$node->safe_psql('template1', 'VACUUM FREEZE');
$node->safe_psql('postgres', 'VACUUM FREEZE');
$node->stop;
my $near = 2**32 - 65536;
command_ok([ 'pg_resetwal', '-x', $near, $node->data_dir ], 'pg_resetwal -x moves the cluster near the wrap');
$node->start;
my $before = $node->safe_psql('postgres', q{SELECT pg_current_xact_id()});
cmp_ok($before, '>=', $near, "next xid $before is near the wrap");

$node->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  CREATE TABLE notes (body text);
  CREATE TABLE toks (name text PRIMARY KEY, t text);
  SELECT authctx.set_password(authctx.create_user('wrap@example.com'), 'wrap password 1');
  INSERT INTO toks SELECT 'first', (authctx.login('wrap@example.com', 'wrap password 1')).refresh_token::text;
});
# spend it before the wrap
$node->safe_psql('postgres', q{
  INSERT INTO toks SELECT 'second', (authctx.refresh(t)).refresh_token::text FROM toks WHERE name = 'first'});
# (the xid of the spend, from the row version it wrote: 32 bits, before the wrap)
my $spent_xid = $node->safe_psql('postgres', q{
  SELECT xmin::text::bigint FROM authctx.refresh_tokens
   WHERE id = (SELECT authctx._token_id(t::authctx.token) FROM toks WHERE name = 'first')});
cmp_ok($spent_xid, '>=', $near, "spent before the wrap (by xid $spent_xid)");

# past the wrap: one xid per transaction
$node->safe_psql('postgres', q{
  CREATE PROCEDURE burn(n int) LANGUAGE plpgsql AS $$
  BEGIN
    FOR i IN 1 .. n LOOP
      PERFORM pg_current_xact_id();
      COMMIT;
    END LOOP;
  END $$;
  CALL burn(70000);});
my $after = $node->safe_psql('postgres', q{SELECT pg_current_xact_id()});
cmp_ok($after, '>', 2**32, "the xid counter wrapped (next xid $after, epoch 1)");
my $low = $node->safe_psql('postgres', q{SELECT pg_current_xact_id()::text::bigint & 4294967295});
cmp_ok($low, '<', $spent_xid, 'the low 32 bits of the xid are now below those of the spend');

# the reuse, from a transaction that has written (has an xid)
my ($rc, $out, $err) = $node->psql('postgres', q{
  BEGIN;
  INSERT INTO notes VALUES ('before the reuse');
  SELECT authctx.refresh(t) FROM toks WHERE name = 'first';
  COMMIT;});
like($err, qr/invalid token/, 'the spent token is refused as a reuse (28000)');
unlike($err, qr/in the future|22023/, 'not with an error about the xid');
is($node->safe_psql('postgres', q{
  SELECT count(*) FROM authctx.refresh_tokens r
   WHERE r.family_id = (SELECT family_id FROM authctx.refresh_tokens
                         WHERE id = (SELECT authctx._token_id(t::authctx.token) FROM toks WHERE name = 'first'))
     AND r.revoked_at IS NULL}), '0', 'the whole family is revoked');
is($node->safe_psql('postgres', q{SELECT count(*) FROM authctx.audit_log WHERE event = 'refresh_reuse'}),
	'1', 'and the reuse audited');
($rc, $out, $err) = $node->psql('postgres', q{SELECT authctx.refresh(t) FROM toks WHERE name = 'second'});
like($err, qr/invalid token/, 'the newest token of the family no longer works');

# after the wrap, a token spent earlier in the same transaction is still
# recognised: refused without revoking anything
$node->safe_psql('postgres', q{
  INSERT INTO toks SELECT 'third', (authctx.login('wrap@example.com', 'wrap password 1')).refresh_token::text});
($rc, $out, $err) = $node->psql('postgres', q{
  BEGIN;
  INSERT INTO notes VALUES ('twice');
  SELECT (authctx.refresh(t)).session_id IS NOT NULL FROM toks WHERE name = 'third';
  SELECT authctx.refresh(t) FROM toks WHERE name = 'third';
  ROLLBACK;});
like($err, qr/invalid token/, 'presented twice in one transaction: the second is refused');
is($node->safe_psql('postgres', q{SELECT count(*) FROM authctx.audit_log WHERE event = 'refresh_reuse'}),
	'1', 'without a reuse');
is($node->safe_psql('postgres', q{SELECT (authctx.refresh(t)).session_id IS NOT NULL FROM toks WHERE name = 'third'}),
	't', 'and the token still works once that transaction rolled back');

$node->stop;
done_testing();
