-- No token, secret or password is stored anywhere: after issuing tokens of
-- every kind (and failing, refreshing, reusing, authenticating with them),
-- scan every column of every table in schema authctx for them.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

-- what must never be found: the tokens, their base64url bodies, their
-- secrets (hex and base64), and the passwords used
CREATE TEMP TABLE issued (what text, tok authctx.token);
CREATE TEMP TABLE needles (what text, needle text);

-- every column of every table of a schema that contains a needle
CREATE FUNCTION pg_temp.scan(p_schema name)
RETURNS TABLE (tbl text, col text, what text, hits bigint)
LANGUAGE plpgsql AS $$
DECLARE
  c record;
BEGIN
  FOR c IN
    SELECT a.attrelid::regclass AS rel, a.attname
      FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid
     WHERE r.relnamespace = (SELECT n.oid FROM pg_namespace n
                              WHERE n.nspname = p_schema
                                 OR (p_schema = 'pg_temp' AND n.oid = pg_my_temp_schema()))
       AND r.relkind IN ('r', 'p', 'm')
       AND a.attnum > 0 AND NOT a.attisdropped
       AND r.relname NOT IN ('issued', 'needles')
  LOOP
    RETURN QUERY EXECUTE format(
      'SELECT %L, %L, n.what, count(*) FROM %s t, pg_temp.needles n
        WHERE strpos(t.%I::text, n.needle) > 0 GROUP BY n.what',
      c.rel::text, c.attname::text, c.rel, c.attname);
  END LOOP;
END
$$;
-- how many columns of a schema the scan reads
CREATE FUNCTION pg_temp.columns(p_schema name) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid
   WHERE r.relnamespace = p_schema::regnamespace AND r.relkind IN ('r', 'p', 'm')
     AND a.attnum > 0 AND NOT a.attisdropped;
$$;

SELECT authctx.create_tenant('nost-acme') IS NOT NULL AS tenant;
SELECT authctx.create_user('nost-olga@example.com') AS olga \gset
SELECT authctx.set_password(:'olga', 'olga secret password'), authctx.add_member('nost-acme', :'olga');

-- issue, use and misuse tokens of every kind
INSERT INTO issued SELECT 'login session', r.session_token FROM authctx.login('nost-olga@example.com', 'olga secret password') r;
INSERT INTO issued SELECT 'login refresh', r.refresh_token FROM authctx.login('nost-olga@example.com', 'olga secret password') r;
INSERT INTO issued SELECT 'refreshed ' || x.k, CASE x.k WHEN 'session' THEN (r).session_token ELSE (r).refresh_token END
  FROM (SELECT authctx.refresh(i.tok::text) AS r FROM issued i WHERE i.what = 'login refresh') s,
       (VALUES ('session'), ('refresh')) x(k);
INSERT INTO issued SELECT 'create_session', authctx.create_session(:'olga', 'nost-acme', NULL, '{"ua": "test"}');
INSERT INTO issued SELECT 'api key', authctx.create_api_key(:'olga', 'nost-acme', 'nostore key', '{read}');
INSERT INTO issued SELECT 'logged out', r.session_token FROM authctx.login('nost-olga@example.com', 'olga secret password') r;
SELECT authctx.logout(i.tok::text) FROM issued i WHERE i.what = 'logged out';
-- a reuse (the worker writes refresh_reuse) and failed logins (login_failed)
DO $$
BEGIN
  PERFORM authctx.refresh(i.tok::text) FROM issued i WHERE i.what = 'login refresh';
EXCEPTION WHEN invalid_authorization_specification THEN
  NULL;
END
$$;
DO $$
BEGIN
  PERFORM authctx.login('nost-olga@example.com', 'olga wrong password');
EXCEPTION WHEN invalid_password THEN
  NULL;
END
$$;
DO $$
BEGIN
  PERFORM authctx.login('olga secret password', 'nost-olga@example.com');
EXCEPTION WHEN invalid_password THEN
  NULL;
END
$$;
-- authenticate with them (a cache, if any, sees them too)
CREATE ROLE nost_app LOGIN IN ROLE authctx_app;
SELECT i.tok::text AS session_text FROM issued i WHERE i.what = 'create_session' \gset
SELECT i.tok::text AS key_text FROM issued i WHERE i.what = 'api key' \gset
SET ROLE nost_app;
BEGIN;
SELECT (auth_begin(:'session_text')).auth_method;
SELECT (auth_begin(:'key_text')).auth_method;
COMMIT;
RESET ROLE;
DROP ROLE nost_app;

SELECT count(*) AS tokens_issued, count(DISTINCT authctx._token_kind(i.tok)) AS kinds FROM issued i;

INSERT INTO needles
SELECT i.what || ' token', i.tok::text FROM issued i
UNION ALL SELECT i.what || ' body', substr(i.tok::text, 5) FROM issued i
UNION ALL SELECT i.what || ' secret hex', encode(x.secret, 'hex') FROM issued i,
  LATERAL (SELECT substr(decode(translate(substr(i.tok::text, 5), '-_', '+/') || '==', 'base64'), 17, 32) AS secret) x
UNION ALL SELECT i.what || ' secret base64', left(encode(x.secret, 'base64'), 40) FROM issued i,
  LATERAL (SELECT substr(decode(translate(substr(i.tok::text, 5), '-_', '+/') || '==', 'base64'), 17, 32) AS secret) x
UNION ALL SELECT 'password', 'olga secret password'
UNION ALL SELECT 'wrong password', 'olga wrong password';
-- the secrets really are the 32 bytes after the 16-byte id
SELECT count(*) AS needles, count(*) FILTER (WHERE what LIKE '% secret hex' AND length(needle) = 64) AS secrets
  FROM needles;

-- the scan itself works: it finds planted needles in a table of pg_temp
CREATE TEMP TABLE planted (t text, b bytea, j jsonb);
INSERT INTO planted
SELECT 'prefix ' || i.tok::text || ' suffix',
       '\x0102'::bytea || substr(decode(translate(substr(i.tok::text, 5), '-_', '+/') || '==', 'base64'), 17, 32),
       jsonb_build_object('pw', 'my olga secret password!')
  FROM issued i WHERE i.what = 'api key';
SELECT s.col, s.what, s.hits FROM pg_temp.scan('pg_temp') s ORDER BY s.col, s.what;

-- the real scan: every column of every table of schema authctx
SELECT pg_temp.columns('authctx') >= 60 AS columns_scanned;
SELECT s.tbl, s.col, s.what, s.hits FROM pg_temp.scan('authctx') s ORDER BY 1, 2, 3;
-- the events are there, only without secrets
SELECT a.event, count(*) FROM authctx.audit_log a
 WHERE a.user_id = :'olga' GROUP BY 1 ORDER BY 1;
