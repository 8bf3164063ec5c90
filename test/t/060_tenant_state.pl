# Where tenant isolation keeps its "before" state (authctx.isolated_tables),
# across what a regression test cannot do:
#   (a) ALTER EXTENSION authctx UPDATE from 0.1.0, which kept the state as
#       JSON in the isolation policy's COMMENT (writable by the table's
#       owner): every isolated table is migrated, taking from the comment
#       only what can be checked, and nothing in it ever runs;
#   (b) pg_dump and restore keep the rows (pg_extension_config_dump), and
#       disable works on the restored tables;
#   (c) a table that gets the OID of a dropped isolated table (provoked with
#       pg_resetwal -o) inherits nothing from the stale row.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('tenant_state');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'authctx'
max_worker_processes = 16
authctx.password_memlimit = 8MB
authctx.password_opslimit = 2
authctx.cleanup_interval = 0
autovacuum = off
});
$node->start;

# Run SQL, return "rc|stdout|stderr" pieces for checks.
sub run_sql
{
	my ($db, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql, extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
	return ($rc, $out, $err);
}

# What disable must leave: owner ("dba" for the superuser running this),
# RLS flags, policies, default, indexes.
my $shape = q{SELECT coalesce(nullif(c.relowner::regrole::text, current_user::text), 'dba'), c.relrowsecurity, c.relforcerowsecurity,
  (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),
  (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a
     ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = c.oid AND a.attname = 'tenant_id'),
  (SELECT string_agg(i.indexrelid::regclass::text, ',' ORDER BY 1) FROM pg_index i WHERE i.indrelid = c.oid)
  FROM pg_class c WHERE c.oid = };

# ---------------------------------------------------------------- (a) 0.1.0 comments
$node->safe_psql('postgres', 'CREATE DATABASE mig');
$node->safe_psql('mig', q{
  CREATE EXTENSION authctx VERSION '0.1.0';
  CREATE ROLE mallory NOLOGIN IN ROLE authctx_manager;
  GRANT CREATE ON SCHEMA public TO mallory;
  CREATE TABLE ran (who text, superuser boolean);
  GRANT INSERT ON ran TO PUBLIC;
  CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS
    $$ INSERT INTO ran VALUES (current_user, current_setting('is_superuser')::boolean) RETURNING 1 $$;

  -- honest 0.1.0 records, with defaults of each harmless form
  CREATE TABLE plain (id int, tenant_id uuid DEFAULT '00000000-0000-0000-0000-00000000000a');
  SELECT authctx.enable_tenant_isolation('plain');
  CREATE TABLE gen (id int, tenant_id uuid DEFAULT gen_random_uuid());
  ALTER TABLE gen ENABLE ROW LEVEL SECURITY;
  SELECT authctx.enable_tenant_isolation('gen');
  CREATE TABLE nodefault (id int, tenant_id uuid);
  SELECT authctx.enable_tenant_isolation('nodefault');
  -- an honest default that is not one of the harmless forms
  CREATE TABLE fancy (id int, tenant_id uuid DEFAULT md5('x')::uuid);
  SELECT authctx.enable_tenant_isolation('fancy');

  -- a table whose owner rewrote the comment: the review's injection, RLS
  -- flags that are not booleans, and another table's index
  CREATE TABLE forged (id int, tenant_id uuid);
  INSERT INTO forged VALUES (1, NULL), (2, NULL);
  ALTER TABLE forged OWNER TO mallory;
  SET ROLE mallory;
  SELECT authctx.enable_tenant_isolation('forged');
  COMMENT ON POLICY authctx_tenant_isolation ON forged IS
    '{"column": "tenant_id", "rls_enabled": "no", "rls_forced": false, "index": "plain_tenant_id_authctx_idx",
      "default": "NULL, ALTER COLUMN id TYPE int USING public.evil()"}';
  RESET ROLE;
  -- not JSON at all
  CREATE TABLE garbage (id int, tenant_id uuid DEFAULT '00000000-0000-0000-0000-00000000000b');
  SELECT authctx.enable_tenant_isolation('garbage');
  COMMENT ON POLICY authctx_tenant_isolation ON garbage IS 'not json';
  -- a comment naming another column than the policy compares
  CREATE TABLE twocols (other_id uuid DEFAULT '00000000-0000-0000-0000-00000000000c', tenant_id uuid);
  SELECT authctx.enable_tenant_isolation('twocols');
  COMMENT ON POLICY authctx_tenant_isolation ON twocols IS
    '{"column": "other_id", "rls_enabled": false, "rls_forced": false, "index": null,
      "default": "''00000000-0000-0000-0000-00000000000c''::uuid"}';
  -- a policy of that name that authctx did not make
  CREATE TABLE handmade (id int, tenant_id uuid);
  CREATE POLICY authctx_tenant_isolation ON handmade USING (true);
  -- partitions (0.1.0 saved their state after the parent had set their default)
  CREATE TABLE parted (tenant_id uuid, v int) PARTITION BY LIST (v);
  CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
  SELECT authctx.enable_tenant_isolation('parted');
});

my ($rc, $out, $err) = run_sql('mig', 'ALTER EXTENSION authctx UPDATE');
is($rc, 0, '(a) ALTER EXTENSION authctx UPDATE migrates the 0.1.0 state');
like($err, qr/WARNING:  policy authctx_tenant_isolation on table "public\.handmade" is not one authctx created/,
	'(a) a policy authctx did not create is reported, not migrated');
my @unknown = sort ($err =~ /WARNING:  the default of column "tenant_id" of table "(\S+)" before isolation is not restorable/g);
is(join(',', @unknown), 'public.fancy,public.forged,public.garbage,public.parted_1,public.twocols',
	'(a) the defaults not restorable are named during the update');
is($node->safe_psql('mig', q{SELECT relid, tenant_column, rls_enabled, rls_forced, default_known,
	  coalesce(previous_default, '-'), coalesce(created_index, '-')
	  FROM authctx.isolated_tables ORDER BY relid::text}),
	join("\n",
		"fancy|tenant_id|f|f|f|-|fancy_tenant_id_authctx_idx",
		"forged|tenant_id|t|f|f|-|-",
		"garbage|tenant_id|t|t|f|-|-",
		"gen|tenant_id|t|f|t|gen_random_uuid()|gen_tenant_id_authctx_idx",
		"nodefault|tenant_id|f|f|t|-|nodefault_tenant_id_authctx_idx",
		"parted|tenant_id|f|f|t|-|parted_tenant_id_authctx_idx",
		"parted_1|tenant_id|f|f|f|-|-",
		"plain|tenant_id|f|f|t|'00000000-0000-0000-0000-00000000000a'::uuid|plain_tenant_id_authctx_idx",
		"twocols|tenant_id|t|t|f|-|-"),
	'(a) migrated rows: checked fields kept, the rest fail closed (RLS stays on, default unknown, no index)');
is($node->safe_psql('mig', q{SELECT count(*) FROM pg_policy p
	  WHERE polname = 'authctx_tenant_isolation' AND left(obj_description(p.oid, 'pg_policy'), 1) = chr(123)}),
	'0', '(a) no JSON is left in the policies\' comments');
is($node->safe_psql('mig', q{SELECT table_name || ':' || coalesce(problem, 'ok') FROM authctx.isolation_report()
	  WHERE table_name::text <> 'ran' ORDER BY 1}),
	join("\n",
		"fancy:ok", "forged:ok", "garbage:ok", "gen:ok",
		"handmade:row level security is not enabled; row level security is not forced (the owner bypasses it); "
		  . "the authctx tenant isolation policy was changed; no index leading with the tenant column",
		"nodefault:ok", "parted:ok", "parted_1:ok", "plain:ok", "twocols:ok"),
	'(a) isolation_report reads the migrated state');

# the DBA releases every table
($rc, $out, $err) = run_sql('mig', q{
  SELECT authctx.disable_tenant_isolation(t::regclass)
    FROM unnest('{plain,gen,nodefault,fancy,forged,garbage,twocols,parted}'::text[]) t});
is($rc, 0, '(a) disable works on every migrated table');
@unknown = sort ($err =~ /NOTICE:  the default of column "tenant_id" of table "(\S+)" before isolation is unknown/g);
is(join(',', @unknown), 'public.fancy,public.forged,public.garbage,public.parted_1,public.twocols',
	'(a) disable drops the defaults it cannot restore, and says so');
is($node->safe_psql('mig', 'SELECT count(*) FROM ran'), '0', '(a) nothing from a comment ran');
my %want = (
	plain     => "dba|f|f|0|'00000000-0000-0000-0000-00000000000a'::uuid|",
	gen       => "dba|t|f|0|gen_random_uuid()|",
	nodefault => "dba|f|f|0||",
	fancy     => "dba|f|f|0||",
	forged    => "mallory|t|f|0||forged_tenant_id_authctx_idx",
	garbage   => "dba|t|t|0||garbage_tenant_id_authctx_idx",
	twocols   => "dba|t|t|0||twocols_tenant_id_authctx_idx",
	parted_1  => "dba|f|f|0||");
for my $t (sort keys %want)
{
	is($node->safe_psql('mig', "$shape '$t'::regclass"), $want{$t}, "(a) $t after disable");
}
is($node->safe_psql('mig', q{SELECT count(*) FROM authctx.isolated_tables}), '0', '(a) no rows left');
($rc, $out, $err) = run_sql('mig', q{SELECT authctx.disable_tenant_isolation('handmade')});
like($err, qr/table "public\.handmade" is not isolated by authctx/, '(a) the unmigrated table is not isolated by authctx');

# ---------------------------------------------------------------- (b) dump and restore
$node->safe_psql('postgres', 'CREATE DATABASE dumped');
$node->safe_psql('dumped', q{
  CREATE EXTENSION authctx;
  CREATE SCHEMA app;
  CREATE TABLE app.notes (id int, tenant_id uuid DEFAULT '00000000-0000-0000-0000-00000000000d');
  ALTER TABLE app.notes ENABLE ROW LEVEL SECURITY;
  SELECT authctx.enable_tenant_isolation('app.notes');
});
my $dumpfile = $node->basedir . '/dumped.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dumpfile, '-d', $node->connstr('dumped') ], '(b) pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dumpfile ], '(b) pg_restore');
is($node->safe_psql('restored', q{SELECT relid, rls_enabled, rls_forced, previous_default, created_index
	  FROM authctx._isolation_state()}),
	"app.notes|t|f|'00000000-0000-0000-0000-00000000000d'::uuid|notes_tenant_id_authctx_idx",
	'(b) the saved state survived the dump, naming the restored table');
$node->safe_psql('restored', q{SELECT authctx.disable_tenant_isolation('app.notes')});
is($node->safe_psql('restored', "$shape 'app.notes'::regclass"),
	"dba|t|f|0|'00000000-0000-0000-0000-00000000000d'::uuid|",
	'(b) disable on the restored table undoes exactly what enable did');

# ---------------------------------------------------------------- (c) a recycled OID
$node->safe_psql('postgres', 'CREATE DATABASE oids');
$node->safe_psql('oids', q{
  CREATE EXTENSION authctx;
  CREATE ROLE first_owner NOLOGIN IN ROLE authctx_manager;
  CREATE ROLE second_owner NOLOGIN IN ROLE authctx_manager;
  GRANT CREATE ON SCHEMA public TO first_owner, second_owner;
  SET ROLE first_owner;
  CREATE TABLE first_t (id int, tenant_id uuid DEFAULT '00000000-0000-0000-0000-0000000000e1');
  SELECT authctx.enable_tenant_isolation('first_t');
});
my $oid = $node->safe_psql('oids', q{SELECT 'first_t'::regclass::oid});
# dropped without disable: its row stays until an enable or disable purges it
# (new OIDs skip any still held by a dead catalog row: vacuum them away,
# rather than hope autovacuum did)
$node->safe_psql('oids', 'DROP TABLE first_t');
$node->safe_psql('oids', 'VACUUM pg_catalog.pg_class, pg_catalog.pg_type, pg_catalog.pg_attrdef, pg_catalog.pg_depend; CHECKPOINT;');
$node->stop;
$node->command_ok([ 'pg_resetwal', '-o', $oid, $node->data_dir ], '(c) pg_resetwal -o sets the next OID');
$node->start;
$node->safe_psql('oids', q{
  SET ROLE second_owner;
  CREATE TABLE second_t (id int, tenant_id uuid DEFAULT '00000000-0000-0000-0000-0000000000e2');
});
is($node->safe_psql('oids', q{SELECT 'second_t'::regclass::oid}), $oid, '(c) the new table got the dropped table\'s OID');
is($node->safe_psql('oids', q{SELECT count(*) FROM authctx.isolated_tables WHERE relid = 'second_t'::regclass}),
	'1', '(c) the stale row now names the new table');
is($node->safe_psql('oids', q{SELECT count(*) FROM authctx._isolation_state()}), '0', '(c) but counts for nothing');
is($node->safe_psql('oids', q{SELECT has_policy, problem IS NOT NULL FROM authctx.isolation_report()
	  WHERE table_name = 'second_t'::regclass}),
	'f|t', '(c) isolation_report sees the new table as not isolated');
($rc, $out, $err) = run_sql('oids', q{SELECT authctx.disable_tenant_isolation('second_t')});
like($err, qr/table "public\.second_t" is not isolated by authctx/, '(c) disable refuses the new table');
$node->safe_psql('oids', q{SET ROLE second_owner; SELECT authctx.enable_tenant_isolation('second_t');});
is($node->safe_psql('oids', q{SELECT previous_default FROM authctx.isolated_tables WHERE relid = 'second_t'::regclass}),
	"'00000000-0000-0000-0000-0000000000e2'::uuid", '(c) enable records the new table\'s own state');
$node->safe_psql('oids', q{SET ROLE second_owner; SELECT authctx.disable_tenant_isolation('second_t');});
is($node->safe_psql('oids', "$shape 'second_t'::regclass"),
	"second_owner|f|f|0|'00000000-0000-0000-0000-0000000000e2'::uuid|",
	'(c) and disable restores that state, not the dropped table\'s');

$node->stop;
done_testing();
