-- Attack: smuggle a scope into an API key.  Scopes reach the context
-- joined with newlines, and 0.1.0 accepted a scope holding a newline
-- (ARRAY[E'inv:read\ninv:delete'] granted inv:delete) and cut the joined
-- list at 1,023 bytes (which can turn a long scope into a shorter one).
-- create_api_key now accepts only scopes of 1 to 128 characters from
-- A-Z a-z 0-9 _ . : / * + -, at most 64 of them, at most 1,023 bytes joined
-- (22023 otherwise), and auth_begin refuses (28000) a key whose stored
-- scopes break that rule, rows written by 0.1.0 included, instead of
-- cutting or splitting them: from the tables and, preloaded, from the
-- cache.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

\i test/support/try.sql

-- auth_begin with a key, then: may it delete?
CREATE FUNCTION pg_temp.can_delete(tok text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM auth_begin(tok);
  RETURN CASE WHEN authctx.has_scope('inv:delete') THEN 'inv:delete granted'
              ELSE 'authenticated, no inv:delete' END;
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- roles outlive the test database: quiet when a previous run left them
SET client_min_messages = warning;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sc_app') THEN
    CREATE ROLE sc_app LOGIN;
  END IF;
END $$;
GRANT authctx_app TO sc_app;
RESET client_min_messages;
SELECT authctx.create_tenant('sc-acme') AS acme \gset
SELECT authctx.create_user('sc-alice@example.com') AS alice \gset
SELECT authctx.add_member('sc-acme', :'alice');

-- ---------------------------------------------------------------- create_api_key
CREATE TEMP TABLE cases (label text, scopes text[]);
INSERT INTO cases VALUES
  ('newline', ARRAY[E'inv:read\ninv:delete']),
  ('carriage return', ARRAY[E'inv:read\rinv:delete']),
  ('tab', ARRAY[E'inv:\tread']),
  ('other control', ARRAY[E'inv:\x01read']),
  ('delete char', ARRAY['inv:' || chr(127) || 'read']),
  ('comma', ARRAY['inv:read,inv:delete']),
  ('space', ARRAY['inv:read inv:delete']),
  ('semicolon', ARRAY['inv:read;inv:delete']),
  ('quote', ARRAY['inv:"read"']),
  ('backslash', ARRAY['inv:\read']),
  ('non-ascii', ARRAY['inv:lecturé']),
  ('empty', ARRAY['']),
  ('null', ARRAY['inv:read', NULL]),
  ('129 characters', ARRAY[repeat('a', 129)]),
  ('65 scopes', ARRAY(SELECT 's' || g FROM generate_series(1, 65) g)),
  ('1034 bytes joined', ARRAY(SELECT repeat(chr(96 + g), 128) FROM generate_series(1, 7) g)
                        || repeat('h', 109) || 'inv:delete-own-drafts'::text),
  ('two dimensions', ARRAY[['inv:read'], ['inv:write']]),
  -- accepted
  ('plain', ARRAY['inv:read', 'inv:write']),
  ('every allowed character', ARRAY['AZaz09_.:/*+-', 'https://api.example.com/inv.read', 'inv:*']),
  ('128 characters', ARRAY[repeat('a', 128)]),
  ('64 scopes', ARRAY(SELECT 's' || g FROM generate_series(1, 64) g)),
  ('1023 bytes joined', ARRAY(SELECT repeat(chr(96 + g), 127) FROM generate_series(1, 8) g)),
  ('none', '{}'),
  ('null list', NULL);
SELECT label,
       try(format('SELECT authctx.create_api_key(%L, %L, %L, %L)',
                          :'alice', 'sc-acme', 'k ' || label, scopes)) AS result
  FROM cases ORDER BY label;
SELECT array_length(scopes, 1) AS n, octet_length(array_to_string(scopes, E'\n')) AS joined
  FROM cases WHERE label LIKE '10__ bytes joined' ORDER BY label;
-- nothing refused was stored
SELECT count(*) AS stored_keys, bool_and(NOT EXISTS (
         SELECT 1 FROM unnest(k.scopes) s WHERE s !~ '^[A-Za-z0-9_.:/*+-]{1,128}$')) AS all_valid
  FROM authctx.api_keys k WHERE k.name LIKE 'k %';

-- ---------------------------------------------------------------- auth_begin on bad stored scopes
-- Rows as 0.1.0 could store them, written directly.
CREATE TEMP TABLE bad (label text, tok text, scopes text[]);
INSERT INTO bad
SELECT label, authctx._token_new('api_key')::text, scopes FROM (VALUES
  ('newline', ARRAY[E'inv:read\ninv:delete']),
  ('comma', ARRAY['inv:read,inv:delete']),
  ('null element', ARRAY['inv:read', NULL]),
  ('does not fit', ARRAY(SELECT repeat(chr(96 + g), 128) FROM generate_series(1, 7) g)
                   || repeat('h', 109) || 'inv:delete-own-drafts'::text),
  ('too long', ARRAY[repeat('x', 1012), 'inv:delete-own-drafts']),
  ('valid, written the same way', ARRAY['inv:read']))
  AS v(label, scopes);
INSERT INTO authctx.api_keys (id, user_id, tenant_id, name, scopes, verifier)
SELECT authctx._token_id(tok::authctx.token), :'alice', :'acme', 'bad ' || label, scopes,
       authctx._token_verifier(tok::authctx.token)
  FROM bad;
GRANT SELECT ON bad TO sc_app;
-- a key whose valid scopes are changed afterwards (preloaded: it was cached)
SELECT authctx.create_api_key(:'alice', 'sc-acme', 'later bad', ARRAY['inv:read'])::text AS later \gset

SET ROLE sc_app;
BEGIN;
SELECT (auth_begin(:'later')).auth_method, authctx.has_scope('inv:read') AS can_read,
       authctx.has_scope('inv:delete') AS can_delete;
COMMIT;
BEGIN;
SELECT (auth_begin(:'later')).auth_method AS cached_call;
COMMIT;
RESET ROLE;
UPDATE authctx.api_keys SET scopes = ARRAY[E'inv:read\ninv:delete'] WHERE name = 'later bad';
INSERT INTO bad VALUES ('changed after use', :'later', NULL);

SET ROLE sc_app;
-- twice each: the second call would be a cache hit if the first had cached it
SELECT label, pg_temp.can_delete(tok) AS first_call, pg_temp.can_delete(tok) AS second_call
  FROM bad ORDER BY label;
-- and inside one transaction nothing was published by the failed calls
BEGIN;
SELECT pg_temp.can_delete(tok) AS refused FROM bad WHERE label = 'newline';
SELECT authctx.is_authenticated() AS authenticated, authctx.has_scope('inv:delete') AS can_delete;
COMMIT;
RESET ROLE;

-- a valid key still works, with exactly its scopes
SELECT authctx.create_api_key(:'alice', 'sc-acme', 'good', ARRAY['inv:read', 'inv:*'])::text AS good \gset
SET ROLE sc_app;
BEGIN;
SELECT (auth_begin(:'good')).auth_method;
SELECT authctx.has_scope('inv:read') AS can_read, authctx.has_scope('inv:*') AS star,
       authctx.has_scope('inv:delete') AS can_delete, authctx.has_scope('inv') AS prefix;
COMMIT;
RESET ROLE;

-- ---------------------------------------------------------------- keys made by 0.1.0
-- 0.1.0's create_api_key stored a newline inside a scope; the update keeps
-- the row (and says so), and auth_begin refuses the key.
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_authctx_scopes;
\c regress_authctx_scopes
SET client_min_messages = warning;
CREATE EXTENSION authctx VERSION '0.1.0';
RESET client_min_messages;
SELECT authctx.create_tenant('sc-old') AS old_tenant \gset
SELECT authctx.create_user('sc-old@example.com') AS old_user \gset
SELECT authctx.add_member('sc-old', :'old_user');
SELECT authctx.create_api_key(:'old_user', 'sc-old', 'smuggled', ARRAY[E'inv:read\ninv:delete'])::text AS smuggled \gset
SELECT authctx.create_api_key(:'old_user', 'sc-old', 'fine', ARRAY['inv:read'])::text AS fine \gset
ALTER EXTENSION authctx UPDATE;
SELECT name, scopes FROM authctx.api_keys ORDER BY name;
CREATE FUNCTION pg_temp.can_delete(tok text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM auth_begin(tok);
  RETURN CASE WHEN authctx.has_scope('inv:delete') THEN 'inv:delete granted'
              ELSE 'authenticated, no inv:delete' END;
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SET ROLE sc_app;
SELECT pg_temp.can_delete(:'smuggled') AS smuggled, pg_temp.can_delete(:'fine') AS fine;
RESET ROLE;
\c :regress_db
DROP DATABASE regress_authctx_scopes;
