# Attack: forge the context through settings applied at connection time.
#
# Values for the six context parameters (authctx.user_id, tenant_id, role,
# session_id and the hidden credential and admin_bypass) given as connection
# options (PGOPTIONS, the conninfo "options" keyword), stored with ALTER ROLE
# / ALTER ROLE ... IN DATABASE / ALTER DATABASE / ALTER ROLE ALL ... SET
# while the library was not loaded (as 0.1.0 allowed without preloading, or
# before the extension was installed), or written in postgresql.conf.
# Without preloading they are placeholders until the library loads; with
# preloading they reach the check hook directly, in backends and in
# parallel workers.  In both modes nothing may leak: the accessors,
# current_setting(), authctx.current(), has_scope(), admin_bypass(), an
# isolated table (its tenant policy and its admin policy) and accessors
# evaluated in parallel workers all show no context.  SET, SET LOCAL,
# set_config() and function SET clauses: sql/nopreload_attack_placeholders.sql.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $forged_sid = 'd0d0d0d0-0000-4000-8000-000000000001';

# The SQL of one attacker's connection: the isolated table first (the
# attack itself; its policy loads the library), then what leaked, then the
# accessors evaluated by parallel workers only.
my $check = q{
SELECT count(*) FROM public.invoices;
SELECT public.leaks();
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT count(*) FILTER (WHERE authctx.user_id() IS NOT NULL OR authctx.tenant_id() IS NOT NULL
                          OR authctx.role() IS NOT NULL OR authctx.session_id() IS NOT NULL
                          OR authctx.current() IS NOT NULL OR authctx.is_authenticated()
                          OR authctx.has_scope('inv:delete') OR authctx.admin_bypass())
  FROM public.plain_rows;
};

# Run SQL on a libpq connection string; returns (exit code, stdout, stderr).
sub run_psql
{
	my ($connstr, $sql) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $connstr ],
		'<', \$sql, '>', \$out, '2>', \$err);
	chomp $out;
	return ($? >> 8, $out, $err);
}

# One attack: connect, run $check, and require that nothing leaked (or, if
# $refused, that the connection itself was refused by authctx).
sub attack_ok
{
	my ($node, $name, $connstr, %opt) = @_;
	local $ENV{PGOPTIONS} = $opt{pgoptions} if defined $opt{pgoptions};
	my ($rc, $out, $err) = run_psql($node->connstr . " $connstr", $check);
	if ($opt{refused})
	{
		isnt($rc, 0, "$name: connection refused");
		like($err, qr/can only be set by auth_begin/, "$name: refused by authctx");
		return;
	}
	is($rc, 0, "$name: the session runs") or diag($err);
	is($out, "0\nnothing\n0", "$name: no rows, no context, none in parallel workers");
	if ($opt{warned})
	{
		like($err, qr/discarded a value of parameter "authctx\.tenant_id" set before the authctx library was loaded/,
			"$name: the discarded value is reported");
	}
}

# SET clauses for the six parameters, and the same as postgresql.conf lines.
sub forged
{
	my ($ids, $fmt) = @_;
	my @p = (
		[ 'user_id', $ids->{bob} ], [ 'tenant_id', $ids->{globex} ],
		[ 'role', 'owner' ], [ 'session_id', $forged_sid ],
		[ 'credential', 'api_key;;inv:delete' ], [ 'admin_bypass', 'forged' ]);
	return map { sprintf($fmt, "authctx.$_->[0]", $_->[1]) } @p;
}

for my $mode ('nopreload', 'preload')
{
	my $node = PostgreSQL::Test::Cluster->new("attack_settings_$mode");
	$node->init;
	$node->append_conf('postgresql.conf', "max_worker_processes = 16\nmax_parallel_workers = 8\n");
	$node->start;

	# Two databases, the same world in each.
	my $setup = q{
	  SET client_min_messages = warning;
	  CREATE EXTENSION authctx;
	  SELECT authctx.create_tenant('acme'), authctx.create_tenant('globex');
	  SELECT authctx.add_member('acme', authctx.create_user('alice@acme.test'));
	  SELECT authctx.add_member('globex', authctx.create_user('bob@globex.test'), 'owner');
	  CREATE TABLE public.invoices (id int, tenant_id uuid NOT NULL, amount int);
	  SELECT authctx.enable_tenant_isolation('public.invoices');
	  INSERT INTO public.invoices
	  SELECT 1, t.id, 100 FROM authctx.tenants t;
	  CREATE TABLE public.plain_rows AS SELECT g AS id FROM generate_series(1, 20000) g;
	  ANALYZE public.plain_rows;
	  GRANT SELECT ON public.invoices, public.plain_rows TO PUBLIC;
	  CREATE FUNCTION public.leaks() RETURNS text LANGUAGE plpgsql AS $$
	  DECLARE
	    leaks text[] := '{}';
	    n text;
	  BEGIN
	    IF authctx.user_id() IS NOT NULL THEN leaks := leaks || 'user_id()'::text; END IF;
	    IF authctx.tenant_id() IS NOT NULL THEN leaks := leaks || 'tenant_id()'::text; END IF;
	    IF authctx.role() IS NOT NULL THEN leaks := leaks || 'role()'::text; END IF;
	    IF authctx.session_id() IS NOT NULL THEN leaks := leaks || 'session_id()'::text; END IF;
	    IF authctx.current() IS NOT NULL THEN leaks := leaks || 'current()'::text; END IF;
	    IF authctx.is_authenticated() THEN leaks := leaks || 'is_authenticated()'::text; END IF;
	    IF authctx.has_role('owner') THEN leaks := leaks || 'has_role()'::text; END IF;
	    IF authctx.has_scope('inv:delete') THEN leaks := leaks || 'has_scope()'::text; END IF;
	    IF authctx.admin_bypass() THEN leaks := leaks || 'admin_bypass()'::text; END IF;
	    FOREACH n IN ARRAY ARRAY['user_id', 'tenant_id', 'role', 'session_id', 'credential', 'admin_bypass'] LOOP
	      IF current_setting('authctx.' || n, true) <> '' THEN
	        leaks := leaks || ('setting ' || n);
	      END IF;
	    END LOOP;
	    IF EXISTS (SELECT 1 FROM public.invoices) THEN leaks := leaks || 'isolated rows'::text; END IF;
	    RETURN coalesce(nullif(array_to_string(leaks, ', '), ''), 'nothing');
	  END
	  $$;
	};
	$node->safe_psql('postgres', q{
	  CREATE DATABASE attackdb;
	  CREATE DATABASE attackdb_db;
	});
	$node->safe_psql($_, $setup) for ('attackdb', 'attackdb_db');
	# Attackers: application roles that are also members of authctx_admin,
	# so that a forged admin_bypass would open the admin policy.
	$node->safe_psql('postgres', q{
	  CREATE ROLE att LOGIN IN ROLE authctx_app, authctx_admin;
	  CREATE ROLE att_role LOGIN IN ROLE authctx_app, authctx_admin;
	  CREATE ROLE att_roledb LOGIN IN ROLE authctx_app, authctx_admin;
	});
	my %ids;
	for my $k ('globex', 'bob')
	{
		my $q = $k eq 'globex'
		  ? q{SELECT id FROM authctx.tenants WHERE slug = 'globex'}
		  : q{SELECT id FROM authctx.users WHERE email = 'bob@globex.test'};
		$ids{"$_:$k"} = $node->safe_psql($_, $q) for ('attackdb', 'attackdb_db');
	}
	my %in_attackdb = (globex => $ids{'attackdb:globex'}, bob => $ids{'attackdb:bob'});
	my %in_attackdb_db = (globex => $ids{'attackdb_db:globex'}, bob => $ids{'attackdb_db:bob'});

	# Stored settings, written from backends that have not loaded authctx
	# (a fresh psql each, no authctx function called).
	$node->safe_psql('postgres', join('',
		map { "ALTER ROLE att_role $_;\n" } forged(\%in_attackdb, "SET %s = '%s'")));
	$node->safe_psql('postgres', join('',
		map { "ALTER ROLE att_roledb IN DATABASE attackdb $_;\n" } forged(\%in_attackdb, "SET %s = '%s'")));
	$node->safe_psql('postgres', join('',
		map { "ALTER DATABASE attackdb_db $_;\n" } forged(\%in_attackdb_db, "SET %s = '%s'")));
	is($node->safe_psql('postgres', q{
	    SELECT count(*) FROM pg_db_role_setting, unnest(setconfig) c WHERE c LIKE 'authctx.%'}),
		'18', "$mode: 18 stored settings");

	if ($mode eq 'preload')
	{
		$node->append_conf('postgresql.conf', "shared_preload_libraries = 'authctx'\n");
		$node->restart;
	}
	my $warned = $mode eq 'nopreload';

	attack_ok($node, "$mode: ALTER ROLE ... SET", 'dbname=attackdb user=att_role', warned => $warned);
	attack_ok($node, "$mode: ALTER ROLE ... IN DATABASE ... SET", 'dbname=attackdb user=att_roledb',
		warned => $warned);
	attack_ok($node, "$mode: ALTER DATABASE ... SET", 'dbname=attackdb_db user=att', warned => $warned);

	my $pgoptions = join(' ', forged(\%in_attackdb, '-c %s=%s'));
	attack_ok($node, "$mode: PGOPTIONS", 'dbname=attackdb user=att',
		pgoptions => $pgoptions, warned => $warned, refused => !$warned);
	my $options = join(' ', forged(\%in_attackdb, '-c %s=%s'));
	attack_ok($node, "$mode: conninfo options", "dbname=attackdb user=att options='$options'",
		warned => $warned, refused => !$warned);

	# ALTER ROLE ALL ... SET: every connection to every database; stored
	# without the library (so, in preload mode, from a restart without it).
	if ($mode eq 'preload')
	{
		$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "''");
		$node->restart;
	}
	$node->safe_psql('postgres', join('',
		map { "ALTER ROLE ALL $_;\n" } forged(\%in_attackdb, "SET %s = '%s'")));
	if ($mode eq 'preload')
	{
		$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "'authctx'");
		$node->restart;
	}
	attack_ok($node, "$mode: ALTER ROLE ALL ... SET", 'dbname=attackdb user=att', warned => $warned);
	$node->safe_psql('postgres', 'ALTER ROLE ALL RESET ALL');

	# postgresql.conf: at server start (in the postmaster, inherited by
	# every backend), and, when preloaded, at a reload too.
	$node->append_conf('postgresql.conf', join("\n", forged(\%in_attackdb, "%s = '%s'"), ''));
	$node->restart;
	attack_ok($node, "$mode: postgresql.conf", 'dbname=attackdb user=att', warned => $warned);
	$node->reload;
	attack_ok($node, "$mode: postgresql.conf after reload", 'dbname=attackdb user=att', warned => $warned);

	# And a real context still works alongside all of it.
	my $tok = $node->safe_psql('attackdb', q{
	  SELECT authctx.create_session(id) FROM authctx.users WHERE email = 'alice@acme.test'});
	my ($rc, $out, $err) = run_psql($node->connstr . ' dbname=attackdb user=att', qq{
	  BEGIN;
	  SELECT (auth_begin('$tok')).role;
	  SELECT count(*) FROM public.invoices WHERE tenant_id = authctx.tenant_id();
	  SELECT count(*) FROM public.invoices;
	  COMMIT;
	  SELECT public.leaks();
	});
	is($out, "member\n1\n1\nnothing", "$mode: a real context sees its own tenant only, and ends at COMMIT")
	  or diag($err);

	$node->stop;
}

done_testing();
