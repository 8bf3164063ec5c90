-- auth_begin / auth_end: validation, failures, lifetime of the context.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
LOAD 'authctx';
\i test/support/try.sql
SET client_min_messages = warning;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rq_app') THEN
    CREATE ROLE rq_app LOGIN;
  END IF;
END $$;
GRANT authctx_app TO rq_app;

SELECT authctx.create_tenant('rq-acme', 'Acme') AS acme \gset
SELECT authctx.create_tenant('rq-globex') AS globex \gset
SELECT authctx.create_user('rq-alice@example.com') AS alice \gset
SELECT authctx.create_user('rq-bob@example.com') AS bob \gset
SELECT authctx.create_user('rq-carol@example.com') AS carol \gset
SELECT authctx.add_member('rq-acme', :'alice', 'owner');
SELECT authctx.add_member('rq-globex', :'bob');
SELECT authctx.add_member('rq-acme', :'carol');
SELECT authctx.add_member(:'globex', :'carol', 'billing');

SELECT authctx.create_session(:'alice')::text AS alice_tok \gset
SELECT authctx.create_session(:'bob')::text AS bob_tok \gset
SELECT authctx.create_session(:'carol')::text AS carol_tok \gset
SELECT authctx.create_api_key(:'alice', 'rq-acme', 'ci', '{read,deploy}')::text AS alice_key \gset

-- a mistyped token: one character of the body changed, so the checksum fails
SELECT overlay(:'alice_tok' placing CASE WHEN substr(:'alice_tok', 50, 1) = 'A' THEN 'B' ELSE 'A' END
               from 50 for 1) AS bad_checksum \gset

SET ROLE rq_app;

-- Without a context every accessor is NULL / false.
SELECT authctx.user_id() IS NULL AS no_user, authctx.tenant_id() IS NULL AS no_tenant,
       authctx.role() IS NULL AS no_role, authctx.session_id() IS NULL AS no_session,
       authctx.current() IS NULL AS no_current, authctx.is_authenticated(),
       authctx.has_role('owner'), authctx.has_scope('read');
SELECT current_setting('authctx.user_id', true) = '' AS empty_setting;

-- A valid session: the context is the session's tenant and role.
BEGIN;
SELECT (c).user_id = :'alice' AS user_ok, (c).tenant_id = :'acme' AS tenant_ok,
       (c).role, (c).auth_method, (c).session_id IS NOT NULL AS has_session,
       (c).expires_at > now() AS expires_later
  FROM auth_begin(:'alice_tok') AS c;
SELECT authctx.user_id() = :'alice' AS user_ok, authctx.tenant_id() = :'acme' AS tenant_ok,
       authctx.role(), authctx.is_authenticated(), authctx.has_role('owner'),
       authctx.has_role('member'), authctx.has_scope('anything');
SELECT current_setting('authctx.user_id') = :'alice' AS guc_user,
       current_setting('authctx.tenant_id') = :'acme' AS guc_tenant,
       current_setting('authctx.role') AS guc_role,
       current_setting('authctx.session_id') = authctx.session_id()::text AS guc_session;
SELECT (authctx.current()).auth_method;
COMMIT;
-- gone after COMMIT
SELECT authctx.user_id() IS NULL AS cleared_by_commit, current_setting('authctx.user_id') AS guc;

-- gone after ROLLBACK
BEGIN;
SELECT (auth_begin(:'alice_tok')).role;
ROLLBACK;
SELECT authctx.is_authenticated() AS after_rollback;

-- ROLLBACK TO a savepoint taken before auth_begin clears it; one taken after keeps it
BEGIN;
SAVEPOINT before_auth;
SELECT (auth_begin(:'alice_tok')).role;
SAVEPOINT after_auth;
SELECT (auth_begin(:'bob_tok')).role;
ROLLBACK TO after_auth;
SELECT authctx.user_id() = :'alice' AS back_to_alice;
ROLLBACK TO before_auth;
SELECT authctx.is_authenticated() AS after_rollback_to;
COMMIT;

-- outside a transaction block it lasts for that one statement
SELECT (auth_begin(:'alice_tok')).role, authctx.is_authenticated() AS same_statement;
SELECT authctx.is_authenticated() AS next_statement;

-- calling again replaces the context; auth_end clears it
BEGIN;
SELECT (auth_begin(:'alice_tok')).role;
SELECT (auth_begin(:'bob_tok')).tenant_id = :'globex' AS replaced;
SELECT authctx.user_id() = :'bob' AS now_bob;
SELECT auth_end();
SELECT authctx.is_authenticated() AS after_end, authctx.current() IS NULL AS no_current;
COMMIT;

-- the tenant named by slug or uuid text; the user must be a member
BEGIN;
SELECT (auth_begin(:'carol_tok', 'rq-globex')).role;
SELECT (auth_begin(:'carol_tok', :'acme')).role;
SELECT authctx.tenant_id() = :'acme' AS acme_by_uuid;
COMMIT;
-- a user with several memberships and no tenant named: authenticated, no tenant
BEGIN;
SELECT (c).tenant_id IS NULL AS no_tenant, (c).role IS NULL AS no_role FROM auth_begin(:'carol_tok') c;
SELECT authctx.is_authenticated(), authctx.tenant_id() IS NULL AS tenant_null;
COMMIT;
SELECT try(format('SELECT auth_begin(%L, %L)', :'alice_tok', 'rq-globex')) AS not_member;
SELECT try(format('SELECT auth_begin(%L, %L)', :'alice_tok', 'rq-nonexistent')) AS no_such_tenant;
SELECT try(format('SELECT auth_begin(%L, %L)', :'alice_tok', '00000000-0000-0000-0000-000000000000')) AS no_such_uuid;

-- API keys: method api_key, session_id is the key id, scopes apply
BEGIN;
SELECT (c).auth_method, (c).role, (c).tenant_id = :'acme' AS key_tenant FROM auth_begin(:'alice_key') c;
SELECT authctx.has_scope('read') AS read, authctx.has_scope('deploy') AS deploy,
       authctx.has_scope('admin') AS admin, authctx.has_scope('rea') AS prefix;
COMMIT;
-- an API key acts only in its own tenant
SELECT try(format('SELECT auth_begin(%L, %L)', :'alice_key', 'rq-globex')) AS key_other_tenant;
SELECT try(format('SELECT auth_begin(%L, %L)', :'alice_key', 'rq-acme')) AS key_own_tenant;

-- Every authentication failure: 28000, one message, no token in it.
SELECT try('SELECT auth_begin(NULL)') AS null_token;
SELECT try('SELECT auth_begin('''')') AS empty_token;
SELECT try('SELECT auth_begin(''not a token'')') AS garbage;
SELECT try(format('SELECT auth_begin(%L)', left(:'alice_tok', 60))) AS truncated;
SELECT try(format('SELECT auth_begin(%L)', :'alice_tok' || 'x')) AS too_long;
SELECT try(format('SELECT auth_begin(%L)', :'bad_checksum')) AS bad_checksum;
SELECT try(format('SELECT auth_begin(%L)', replace(:'alice_tok', 'axs_', 'axk_'))) AS wrong_kind_prefix;
RESET ROLE;
SELECT authctx._token_new('session')::text AS unknown_tok \gset
SELECT authctx._token_new('refresh')::text AS some_refresh \gset
SET ROLE rq_app;
SELECT try(format('SELECT auth_begin(%L)', :'unknown_tok')) AS unknown_id;
-- an unknown id reads the row after it, for equal timing; with no row
-- after it (here: deleted, then rolled back) it is refused just the same,
-- and either way the context stays empty
RESET ROLE;
BEGIN;
DELETE FROM authctx.sessions WHERE id > authctx._token_id(:'unknown_tok'::authctx.token);
SELECT count(*) AS sessions_after_it FROM authctx.sessions
 WHERE id > authctx._token_id(:'unknown_tok'::authctx.token);
SELECT try(format('SELECT auth_begin(%L)', :'unknown_tok')) AS unknown_id_last,
       authctx.user_id() IS NULL AS no_context;
ROLLBACK;
SELECT count(*) > 0 AS sessions_exist FROM authctx.sessions;
-- a well-formed token whose id exists but whose secret is wrong
RESET ROLE;
SELECT authctx._token_new('session')::text AS wrong_tok \gset
INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier, expires_at)
SELECT authctx._token_id(:'wrong_tok'::authctx.token), :'alice', :'acme', gen_random_uuid(),
       authctx._token_verifier(authctx._token_new('session')), clock_timestamp() + interval '1 hour';
SET ROLE rq_app;
SELECT try(format('SELECT auth_begin(%L)', :'wrong_tok')) AS wrong_secret_valid_checksum;
SELECT try(format('SELECT auth_begin(%L)', :'some_refresh')) AS refresh_token;

-- expired (absolute), by the wall clock even inside an old transaction
RESET ROLE;
SELECT authctx.create_session(:'bob', NULL, '2 seconds')::text AS short_tok \gset
SET ROLE rq_app;
BEGIN;
SELECT (auth_begin(:'short_tok')).role AS valid_at_first;
SELECT pg_sleep(2.2);
SELECT try(format('SELECT auth_begin(%L)', :'short_tok')) AS expired_by_wall_clock;
ROLLBACK;

-- idle timeout
RESET ROLE;
SELECT authctx.create_session(:'bob')::text AS idle_tok \gset
SET authctx.session_idle_timeout = '1s';
SET ROLE rq_app;
SELECT pg_sleep(1.2);
SELECT try(format('SELECT auth_begin(%L)', :'idle_tok')) AS idle_expired;
RESET ROLE;
RESET authctx.session_idle_timeout;
SET ROLE rq_app;

-- revoked, and a disabled user, are refused at the very next call
RESET ROLE;
SELECT authctx.create_session(:'bob')::text AS rev_tok \gset
SELECT authctx.revoke_session(authctx._token_id(:'rev_tok'::authctx.token));
SET ROLE rq_app;
SELECT try(format('SELECT auth_begin(%L)', :'rev_tok')) AS revoked;
RESET ROLE;
SELECT authctx.disable_user(:'bob');
SET ROLE rq_app;
SELECT try(format('SELECT auth_begin(%L)', :'bob_tok')) AS disabled_user;
RESET ROLE;
SELECT authctx.enable_user(:'bob');
SET ROLE rq_app;
-- disabling revoked the session for good: enabling brings it not back
SELECT try(format('SELECT auth_begin(%L)', :'bob_tok')) AS enabled_again;
RESET ROLE;
SELECT authctx.create_session(:'bob')::text AS bob_tok \gset
SET ROLE rq_app;
SELECT try(format('SELECT auth_begin(%L)', :'bob_tok')) AS new_session;

-- removed from the session's tenant since the session began: 42501
RESET ROLE;
SELECT authctx.remove_member('rq-globex', :'bob');
SET ROLE rq_app;
SELECT try(format('SELECT auth_begin(%L)', :'bob_tok')) AS removed_member;
RESET ROLE;
SELECT authctx.add_member('rq-globex', :'bob');
SET ROLE rq_app;

-- works in a read-only transaction (the request path writes nothing)
BEGIN READ ONLY;
SELECT (auth_begin(:'alice_tok')).role;
COMMIT;

-- a COMMIT inside a procedure clears the context too
RESET ROLE;
CREATE PROCEDURE public.rq_proc(tok text) LANGUAGE plpgsql AS $$
BEGIN
  PERFORM auth_begin(tok);
  RAISE NOTICE 'inside: %', authctx.is_authenticated();
  COMMIT;
  RAISE NOTICE 'after commit: %', authctx.is_authenticated();
END $$;
GRANT EXECUTE ON PROCEDURE public.rq_proc(text) TO rq_app;
SET ROLE rq_app;
SET client_min_messages = notice;
CALL public.rq_proc(:'alice_tok');
SET client_min_messages = warning;

-- refused inside security-restricted operations (index expressions, matviews)
RESET ROLE;
CREATE FUNCTION public.rq_probe(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM auth_begin('x'); RETURN i; END $$;
CREATE TABLE public.rq_sro (i int);
INSERT INTO public.rq_sro VALUES (1);
SELECT try('CREATE INDEX ON public.rq_sro (public.rq_probe(i))') AS in_index_build;
SELECT try('CREATE MATERIALIZED VIEW public.rq_mv AS SELECT public.rq_probe(i) FROM public.rq_sro') AS in_matview;

-- a role that bypasses RLS gets a WARNING
SELECT (auth_begin(:'alice_tok')).role AS superuser_call;
-- auth_begin remembers the answer per role until pg_authid changes: a role
-- granted or denied BYPASSRLS later in the same backend is judged anew
CREATE ROLE rq_bypass_app IN ROLE authctx_app;
SET ROLE rq_bypass_app;
SELECT (auth_begin(:'alice_tok')).role AS no_warning;
RESET ROLE;
ALTER ROLE rq_bypass_app BYPASSRLS;
SET ROLE rq_bypass_app;
SELECT (auth_begin(:'alice_tok')).role AS warns_after_bypassrls;
RESET ROLE;
ALTER ROLE rq_bypass_app NOBYPASSRLS;
SET ROLE rq_bypass_app;
SELECT (auth_begin(:'alice_tok')).role AS no_warning_again;
RESET ROLE;
DROP ROLE rq_bypass_app;

-- the token never appears in any message
SELECT count(*) AS leaks FROM (VALUES
  (try(format('SELECT auth_begin(%L)', :'bad_checksum'))),
  (try(format('SELECT auth_begin(%L)', left(:'alice_tok', 60)))),
  (try(format('SELECT %L::authctx.token', left(:'alice_tok', 60))))) v(m)
 WHERE m LIKE '%' || substr(:'alice_tok', 5, 20) || '%';
