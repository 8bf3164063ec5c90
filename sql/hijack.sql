-- hijack: no user-created object can stand in for one of the extension's,
-- at install time or at call time.  Runs in a database of its own, so that
-- hostile objects touch no other test.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\pset null '(null)'
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_authctx_hijack;
\c regress_authctx_hijack
\pset null '(null)'

CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  st text; msg text;
BEGIN
  EXECUTE stmt;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
  RETURN regexp_replace(st || ': ' || msg,
                        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$$;

-- an unprivileged role allowed to create objects in schema public and in
-- the database (the roles are cluster-wide; the extension is installed in
-- the regression database already, so they exist)
CREATE ROLE regress_hijacker NOLOGIN;
GRANT CREATE ON SCHEMA public TO regress_hijacker;
GRANT CREATE ON DATABASE regress_authctx_hijack TO regress_hijacker;
CREATE ROLE regress_hijack_manager NOLOGIN IN ROLE authctx_manager;

-- ---------------------------------------------------------------- 1. a pre-created schema
SET ROLE regress_hijacker;
CREATE SCHEMA authctx;
CREATE TABLE authctx.planted (x int);
RESET ROLE;
SELECT pg_temp.try('CREATE EXTENSION authctx');
SELECT count(*) AS extensions FROM pg_extension WHERE extname = 'authctx';
SELECT nspowner::regrole AS schema_owner FROM pg_namespace WHERE nspname = 'authctx';
DROP SCHEMA authctx CASCADE;

-- ---------------------------------------------------------------- 2. a pre-created entry point
SET ROLE regress_hijacker;
CREATE FUNCTION public.auth_begin(token text) RETURNS text
  LANGUAGE sql AS $$ SELECT 'hijacked' $$;
RESET ROLE;
SELECT pg_temp.try('CREATE EXTENSION authctx');
SELECT count(*) AS extensions FROM pg_extension WHERE extname = 'authctx';
DROP FUNCTION public.auth_begin(text);

-- ---------------------------------------------------------------- 3. look-alikes in public
-- Decoys for every kind of name the identity functions use: functions,
-- an operator on text, tables named like the extension's.
SET ROLE regress_hijacker;
CREATE FUNCTION public.lower(text) RETURNS text
  LANGUAGE sql AS $$ SELECT 'same-for-everyone' $$;
CREATE FUNCTION public.gen_random_uuid() RETURNS uuid
  LANGUAGE sql AS $$ SELECT '00000000-0000-0000-0000-0000000000aa'::uuid $$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz
  LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$;
CREATE FUNCTION public.always_equal(text, text) RETURNS boolean
  LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.always_equal);
CREATE OPERATOR public.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = public.always_equal);
CREATE TABLE public.users (id uuid, email text, display_name text, disabled_at timestamptz);
CREATE TABLE public.tenants (id uuid, slug text, name text);
INSERT INTO public.tenants VALUES ('00000000-0000-0000-0000-0000000000bb', 'hj-decoy', 'decoy');
CREATE TABLE public.password_credentials (user_id uuid, hash text);
RESET ROLE;

CREATE EXTENSION authctx;
SELECT extname, extnamespace::regnamespace AS schema FROM pg_extension WHERE extname = 'authctx';

-- callers with the decoys first on their search_path
SET ROLE regress_hijack_manager;
SET search_path = public, pg_catalog;
-- the decoys are live for this role ...
SELECT lower('X') AS decoy_lower, 'a' = 'b' AS decoy_equal, gen_random_uuid() AS decoy_uuid;
-- ... but the identity functions never see them
SELECT authctx.create_tenant('hj-acme') AS t_acme \gset
SELECT :'t_acme' <> '00000000-0000-0000-0000-0000000000aa' AS real_tenant_uuid;
SELECT pg_temp.try($$SELECT authctx.create_tenant('hj-acme')$$) AS duplicate_slug;
SELECT pg_temp.try($$SELECT authctx.create_tenant('HJ Bad')$$) AS invalid_slug;
SELECT authctx.create_user('Hijack-Alice@Example.com') AS u_alice \gset
SELECT authctx.create_user('hijack-bob@example.com') AS u_bob \gset
SELECT :'u_alice' <> '00000000-0000-0000-0000-0000000000aa' AS real_user_uuid,
       :'u_alice' <> :'u_bob' AS distinct_users;
SELECT pg_temp.try($$SELECT authctx.create_user('HIJACK-ALICE@example.COM')$$) AS duplicate_email;
SELECT pg_temp.try($$SELECT authctx.create_user('not an email')$$) AS invalid_email;
SELECT pg_temp.try(format('SELECT authctx.set_email(%L, %L)', :'u_bob', 'hijack-alice@EXAMPLE.com')) AS duplicate_email;
SELECT pg_temp.try(format('SELECT authctx.add_member(%L, %L)', 'hj-decoy', :'u_alice')) AS decoy_tenant;
SELECT authctx.add_member('hj-acme', :'u_alice');
SELECT pg_temp.try(format('SELECT authctx.add_member(%L, %L)', 'hj-acme', :'u_alice')) AS duplicate_member;
SELECT pg_temp.try(format('SELECT authctx.set_member_role(%L, %L, %L)', 'hj-acme', :'u_bob', 'x')) AS not_a_member;
SELECT authctx.set_password(:'u_alice', 'Sup3r-Secret-pw');
SELECT authctx.verify_password('hijack-alice@example.com', 'Sup3r-Secret-pw') = :'u_alice' AS alice_verifies;
SELECT authctx.verify_password('hijack-bob@example.com', 'Sup3r-Secret-pw') AS bob_does_not;
SELECT authctx.verify_password('hijack-nobody@example.com', 'Sup3r-Secret-pw') AS nobody_does_not;
SELECT authctx.link_identity(:'u_alice', 'google', 'hj-1');
SELECT pg_temp.try(format('SELECT authctx.link_identity(%L, %L, %L)', :'u_bob', 'google', 'hj-1')) AS linked_elsewhere;
SELECT authctx.find_identity('google', 'hj-1') = :'u_alice' AS found,
       authctx.find_identity('google', 'hj-2') AS not_found;
RESET search_path;

-- temporary look-alikes: pg_temp comes last in the pinned path, and is
-- never searched for functions or operators
CREATE TEMP TABLE tenants (id uuid, slug text, name text);
INSERT INTO tenants VALUES ('00000000-0000-0000-0000-0000000000cc', 'hj-temp', 'temp decoy');
CREATE TEMP TABLE users (id uuid, email text, display_name text, disabled_at timestamptz);
INSERT INTO users VALUES ('00000000-0000-0000-0000-0000000000cc', 'hijack-alice@example.com', NULL, NULL);
SET search_path = pg_temp, public, pg_catalog;
SELECT pg_temp.try(format('SELECT authctx.add_member(%L, %L)', 'hj-temp', :'u_bob')) AS temp_tenant;
SELECT authctx.create_tenant('hj-temp') IS NOT NULL AS real_tenant_created;
SELECT pg_temp.try($$SELECT authctx.create_user('hijack-alice@example.com')$$) AS duplicate_email;
SELECT authctx.verify_password('hijack-alice@example.com', 'Sup3r-Secret-pw') = :'u_alice' AS alice_verifies;
RESET search_path;
RESET ROLE;

-- what the functions wrote, read as superuser: real ids and timestamps
SELECT slug, id <> '00000000-0000-0000-0000-0000000000aa' AS real_id, created_at < 'infinity' AS real_time
  FROM authctx.tenants ORDER BY slug;
SELECT email, id <> '00000000-0000-0000-0000-0000000000aa' AS real_id FROM authctx.users ORDER BY email;
SELECT t.slug, u.email, m.role FROM authctx.memberships m
  JOIN authctx.tenants t ON t.id = m.tenant_id JOIN authctx.users u ON u.id = m.user_id;
SELECT count(*) AS decoy_rows FROM public.users;

-- ---------------------------------------------------------------- back home
\c :regress_db
DROP DATABASE regress_authctx_hijack WITH (FORCE);
DROP ROLE regress_hijacker, regress_hijack_manager;
-- the regression database keeps its extension
SELECT extname FROM pg_extension WHERE extname = 'authctx';
