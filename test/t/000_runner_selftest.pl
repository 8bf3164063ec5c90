
# Copyright (c) authctx contributors
#
# 000_runner_selftest.pl: checks the environment test/run gives TAP tests,
# so that a broken harness shows up as one clear failure instead of as
# failures in every other test: TESTDIR and PG_REGRESS are set, the server
# binaries on PATH are PostgreSQL 15, authctx is installed, and a
# PostgreSQL::Test::Cluster node can be created, started, queried and stopped.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

ok(defined $ENV{TESTDIR} && -d $ENV{TESTDIR} && -w $ENV{TESTDIR},
	'TESTDIR is a writable directory');
ok(defined $ENV{PG_REGRESS} && -x $ENV{PG_REGRESS},
	'PG_REGRESS points at pg_regress');
ok(-f "$ENV{TESTDIR}/test/preload.conf",
	'the work dir is a copy of the repository');

my $pg_config_version = `pg_config --version`;
like($pg_config_version, qr/^PostgreSQL 15\./, 'pg_config on PATH is PostgreSQL 15');

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
ok(-f "$pkglibdir/authctx.so", 'authctx.so is installed');
my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
ok(-f "$sharedir/extension/authctx.control", 'authctx.control is installed');

my $node = PostgreSQL::Test::Cluster->new('selftest');
$node->init;
$node->start;
is($node->safe_psql('postgres', 'SELECT 6 * 7'), '42', 'node answers queries');
is($node->safe_psql('postgres', "SELECT current_setting('server_version_num')::int / 10000"),
	'15', 'node runs PostgreSQL 15');
$node->stop;
ok(!-e $node->data_dir . '/postmaster.pid', 'node stopped');

done_testing();
