-- privileges: who may call what, and PUBLIC may touch nothing but the
-- accessors.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\pset null '(null)'

-- try(stmt): run a statement as the current role, show 'ok' or SQLSTATE and
-- message (uuids masked).
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

-- extension functions, for the catalog checks below
CREATE TEMP VIEW ext_functions AS
SELECT p.oid, p.oid::regprocedure AS fn, p.proname, p.prosecdef, p.proconfig
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'authctx';

CREATE TEMP TABLE identity_calls (call text);
INSERT INTO identity_calls VALUES
  ($$SELECT authctx.create_tenant('priv-x')$$),
  ($$SELECT authctx.create_tenant('priv-x', 'X')$$),
  ($$SELECT authctx.create_user('x@priv.test')$$),
  ($$SELECT authctx.create_user('x@priv.test', 'X')$$),
  ($$SELECT authctx.set_email('00000000-0000-0000-0000-000000000000', 'x@priv.test')$$),
  ($$SELECT authctx.disable_user('00000000-0000-0000-0000-000000000000')$$),
  ($$SELECT authctx.enable_user('00000000-0000-0000-0000-000000000000')$$),
  ($$SELECT authctx.add_member('priv-acme', '00000000-0000-0000-0000-000000000000')$$),
  ($$SELECT authctx.set_member_role('priv-acme', '00000000-0000-0000-0000-000000000000', 'admin')$$),
  ($$SELECT authctx.remove_member('priv-acme', '00000000-0000-0000-0000-000000000000')$$),
  ($$SELECT authctx.set_password('00000000-0000-0000-0000-000000000000', 'Sup3r-Secret-pw')$$),
  ($$SELECT authctx.verify_password('x@priv.test', 'Sup3r-Secret-pw')$$),
  ($$SELECT authctx.link_identity('00000000-0000-0000-0000-000000000000', 'google', 'g-1')$$),
  ($$SELECT authctx.find_identity('google', 'g-1')$$),
  ($$SELECT authctx._resolve_tenant('priv-acme')$$),
  ($$SELECT authctx._password_hash('Sup3r-Secret-pw')$$),
  ($$SELECT authctx._password_rehash('Sup3r-Secret-pw')$$),
  ($$SELECT authctx._password_verify('$argon2id$', 'Sup3r-Secret-pw')$$),
  ($$SELECT authctx._password_needs_rehash('$argon2id$')$$),
  ($$SELECT authctx._password_dummy_verify('Sup3r-Secret-pw')$$);
GRANT SELECT ON identity_calls TO PUBLIC;

-- roles of an application, a back office, an operator and a stranger
CREATE ROLE regress_priv_app NOLOGIN IN ROLE authctx_app;
CREATE ROLE regress_priv_manager NOLOGIN IN ROLE authctx_manager;
CREATE ROLE regress_priv_admin NOLOGIN IN ROLE authctx_admin;
CREATE ROLE regress_priv_nobody NOLOGIN;

-- ---------------------------------------------------------------- the app
SET ROLE regress_priv_app;
SELECT call, pg_temp.try(call) FROM identity_calls;
-- no table of schema authctx is readable (all of them tried, none readable)
CREATE TEMP TABLE app_reads AS
SELECT rel, result
  FROM (SELECT c.oid::regclass AS rel,
               CASE WHEN c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                    THEN pg_temp.try(format('SELECT 1 FROM %s LIMIT 1', c.oid::regclass)) END AS result
          FROM pg_class c
         WHERE c.relnamespace = 'authctx'::regnamespace) t
 WHERE result IS NOT NULL;
SELECT count(*) >= 12 AS tables_tried FROM app_reads;
SELECT rel AS readable_table, result FROM app_reads
 WHERE result NOT LIKE '42501: permission denied%';
SELECT pg_temp.try('SELECT count(*) FROM authctx.users') AS users,
       pg_temp.try('SELECT count(*) FROM authctx.password_credentials') AS password_credentials,
       pg_temp.try('SELECT count(*) FROM authctx.audit_log') AS audit_log;
-- the accessors are open to it
SELECT authctx.user_id() AS user_id, authctx.tenant_id() AS tenant_id,
       authctx.is_authenticated() AS authenticated, authctx.has_role('admin') AS has_role;
RESET ROLE;

-- ---------------------------------------------------------------- a stranger (PUBLIC)
SET ROLE regress_priv_nobody;
SELECT call, pg_temp.try(call) FROM identity_calls WHERE call ~ '(create_user|verify_password|find_identity)';
SELECT pg_temp.try('SELECT count(*) FROM authctx.users') AS users;
SELECT authctx.user_id() AS user_id, authctx.is_authenticated() AS authenticated;
RESET ROLE;

-- ---------------------------------------------------------------- manager and admin
SET ROLE regress_priv_manager;
SELECT authctx.create_tenant('priv-acme') IS NOT NULL AS tenant_created;
SELECT authctx.create_user('mgr@priv.test') AS u_mgr \gset
SELECT authctx.add_member('priv-acme', :'u_mgr', 'owner');
SELECT authctx.set_password(:'u_mgr', 'Sup3r-Secret-pw');
SELECT authctx.verify_password('MGR@priv.test', 'Sup3r-Secret-pw') = :'u_mgr' AS verified;
SELECT authctx.link_identity(:'u_mgr', 'google', 'priv-1');
SELECT authctx.find_identity('google', 'priv-1') = :'u_mgr' AS found;
SELECT pg_temp.try('SELECT count(*) FROM authctx.users') AS users,
       pg_temp.try('SELECT count(*) FROM authctx.audit_log') AS audit_log;
-- internal helpers stay internal, even for the manager
SELECT call, pg_temp.try(call) FROM identity_calls WHERE call LIKE 'SELECT authctx.\_%';
RESET ROLE;

SET ROLE regress_priv_admin;
SELECT authctx.set_member_role('priv-acme', :'u_mgr', 'admin');
SELECT authctx.disable_user(:'u_mgr');
SELECT authctx.enable_user(:'u_mgr');
SELECT pg_temp.try('SELECT count(*) FROM authctx.users') AS users,
       pg_temp.try($$SELECT count(*) FROM authctx.audit_log WHERE event = 'password_changed'$$) AS audit_log;
-- password settings are superuser-only: neither settable nor readable
SELECT pg_temp.try($$SET authctx.password_memlimit = '1MB'$$) AS set_memlimit,
       pg_temp.try($$SELECT set_config('authctx.password_opslimit', '1', true)$$) AS set_config_opslimit,
       pg_temp.try('SHOW authctx.password_min_length') AS show_min_length,
       pg_temp.try($$SELECT current_setting('authctx.password_max_length')$$) AS read_max_length;
RESET ROLE;

-- ---------------------------------------------------------------- catalog rules
-- role membership: admin > manager > app
SELECT r AS role, pg_has_role(r, 'authctx_app', 'USAGE') AS app,
       pg_has_role(r, 'authctx_manager', 'USAGE') AS manager,
       pg_has_role(r, 'authctx_admin', 'USAGE') AS admin
  FROM unnest(ARRAY['regress_priv_app', 'regress_priv_manager', 'regress_priv_admin',
                    'regress_priv_nobody']) AS r;

-- PUBLIC has no privilege on any table, view or sequence of schema authctx
SELECT c.oid::regclass AS object, a.privilege_type
  FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
 WHERE c.relnamespace = 'authctx'::regnamespace AND a.grantee = 0;
SELECT c.oid::regclass AS object, p AS privilege
  FROM pg_class c, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                'REFERENCES', 'TRIGGER']) AS p
 WHERE c.relnamespace = 'authctx'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND has_table_privilege('public', c.oid, p);
-- the roles have none either, except authctx_admin reading the audit log
SELECT r AS role, c.oid::regclass AS object, p AS privilege
  FROM pg_class c,
       unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                    'REFERENCES', 'TRIGGER']) AS p,
       unnest(ARRAY['authctx_app', 'authctx_manager', 'authctx_admin']) AS r
 WHERE c.relnamespace = 'authctx'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND has_table_privilege(r, c.oid, p)
 ORDER BY 1, 2, 3;
SELECT c.oid::regclass AS sequence_visible_to_public
  FROM pg_class c
 WHERE c.relnamespace = 'authctx'::regnamespace
   AND CASE WHEN c.relkind = 'S'
            THEN has_sequence_privilege('public', c.oid, 'USAGE,SELECT,UPDATE') END;

-- every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp
SELECT count(*) > 0 AS has_security_definer_functions FROM ext_functions WHERE prosecdef;
SELECT fn AS unpinned_security_definer, proconfig
  FROM ext_functions
 WHERE prosecdef AND NOT coalesce(proconfig @> '{"search_path=pg_catalog, pg_temp"}', false);

-- PUBLIC may execute the accessors (and the token type's I/O functions,
-- which the type system calls without a privilege check) and nothing else
SELECT fn AS public_executable
  FROM ext_functions
 WHERE has_function_privilege('public', oid, 'EXECUTE')
 ORDER BY fn::text;
SELECT fn, a.privilege_type
  FROM ext_functions f, aclexplode(coalesce((SELECT proacl FROM pg_proc WHERE oid = f.oid),
                                            acldefault('f', 10::oid))) a
 WHERE a.grantee = 0
   AND f.proname NOT IN ('user_id', 'tenant_id', 'role', 'session_id', 'current', 'has_role',
                         'has_scope', 'is_authenticated', 'amr', 'claims',
                         'token_in', 'token_out', 'token_recv', 'token_send');

-- the app may execute only what the contract lists for it
SELECT fn AS app_executable_beyond_contract
  FROM ext_functions
 WHERE has_function_privilege('authctx_app', oid, 'EXECUTE')
   AND NOT has_function_privilege('public', oid, 'EXECUTE')
   AND proname NOT IN ('auth_begin', 'auth_end', 'login', 'refresh', 'logout',
                       'webauthn_challenge', 'login_webauthn', 'my_tenants',
                       'verify_email', 'reset_password', 'login_with_token', 'verify_totp')
 ORDER BY fn::text;

-- identity functions: manager (and admin, by inheritance) yes; app, PUBLIC no
SELECT p.oid::regprocedure AS identity_function,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       has_function_privilege('authctx_app', p.oid, 'EXECUTE') AS app,
       has_function_privilege('authctx_manager', p.oid, 'EXECUTE') AS manager,
       has_function_privilege('authctx_admin', p.oid, 'EXECUTE') AS admin
  FROM pg_proc p
 WHERE p.pronamespace = 'authctx'::regnamespace
   AND (p.proname IN ('create_tenant', 'create_user', 'set_email', 'disable_user', 'enable_user',
                      'add_member', 'set_member_role', 'remove_member', 'set_password',
                      'verify_password', 'link_identity', 'find_identity')
        OR p.proname LIKE '\_password%' OR p.proname IN ('_resolve_tenant', '_require_tenant',
                                                         '_require_user', '_check_email', '_check_role'))
 ORDER BY p.oid::regprocedure::text;

-- clean up the roles (the rows they created belong to the extension's tables)
DROP TABLE app_reads;
DROP ROLE regress_priv_app, regress_priv_manager, regress_priv_admin, regress_priv_nobody;
