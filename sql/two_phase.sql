-- PREPARE TRANSACTION of a change that would invalidate cached sessions
-- is refused in both preload modes: COMMIT PREPARED may run where a cache
-- exists (a restart with preloading, a promoted standby) and nothing would
-- invalidate it there.  The refused transaction is rolled back.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

SELECT authctx.create_tenant('tp-acme') AS acme \gset
SELECT authctx.create_user('tp-alice@example.com') AS alice \gset
SELECT authctx.add_member('tp-acme', :'alice', 'member');
SELECT authctx.create_session(:'alice', 'tp-acme') AS s \gset
SELECT (auth_begin(:'s')).user_id = :'alice' AS before;
SELECT auth_end();

-- a session revocation, a user disable, a membership removal
BEGIN;
SELECT authctx.revoke_session(s.id) IS NOT NULL AS revoked
  FROM authctx.sessions s WHERE s.user_id = :'alice';
PREPARE TRANSACTION 'tp_revoke';
BEGIN;
SELECT authctx.disable_user(:'alice');
PREPARE TRANSACTION 'tp_disable';
BEGIN;
SELECT authctx.remove_member('tp-acme', :'alice');
PREPARE TRANSACTION 'tp_member';

-- nothing was prepared, nothing changed
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid LIKE 'tp_%';
SELECT (auth_begin(:'s')).user_id = :'alice' AS after;
SELECT auth_end();
