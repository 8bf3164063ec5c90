-- fuzz: what fuzzing found, reached from SQL, and every committed fuzz input
-- (test/fuzz/corpus and test/fuzz/regressions) through the SQL function that
-- hands it to its parser.  A fuzzed input never crashes the backend and
-- never gets anything but the documented answer or SQLSTATE.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\i test/support/try.sql
\pset null '(null)'

-- Finding 1 (libFuzzer, base64url and token_text targets): libsodium 1.0.18
-- decodes every byte from 0x80 up as if it were '_', so a token or a
-- challenge could be spelled with, e.g., 'é' (two bytes) for '__': a live
-- session token so spelled was accepted by auth_begin, and log redaction,
-- which looks for [A-Za-z0-9_-], hid at most the part before the 'é'.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fz_app') THEN
    CREATE ROLE fz_app;
  END IF;
END $$;
GRANT authctx_app TO fz_app;
SELECT authctx.create_tenant('fz-acme') IS NOT NULL AS tenant_created;
SELECT authctx.create_user('fz-alice@example.com') AS fz_alice \gset
SELECT authctx.add_member('fz-acme', :'fz_alice');
-- a live session token whose body has '__' (about one in sixty does)
CREATE FUNCTION pg_temp.session_with_underscores(u uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  t text;
BEGIN
  FOR i IN 1 .. 2000 LOOP
    t := authctx.create_session(u, 'fz-acme')::text;
    IF strpos(substr(t, 5), '__') > 0 THEN
      RETURN t;
    END IF;
  END LOOP;
  RETURN NULL;
END
$$;
SELECT pg_temp.session_with_underscores(:'fz_alice') AS tok \gset
SELECT overlay(:'tok' placing 'é' from strpos(substr(:'tok', 5), '__') + 4 for 2) AS tok_e \gset
SET ROLE fz_app;
SELECT try(format('SELECT %L::authctx.token', :'tok')) AS canonical,
       try(format('SELECT %L::authctx.token', :'tok_e')) AS e_acute_for_underscores;
SELECT try(format('SELECT auth_begin(%L)', :'tok')) AS auth_begin_canonical,
       try(format('SELECT auth_begin(%L)', :'tok_e')) AS auth_begin_e_acute;
RESET ROLE;
SELECT authctx._webauthn_b64url_decode('__A') AS underscores,
       authctx._webauthn_b64url_decode('éA') AS e_acute,
       authctx._webauthn_b64url_decode('Zm9v' || chr(8364)) AS euro_sign;

-- The committed fuzz inputs, read from the source tree (superuser).
\getenv abs_srcdir PG_ABS_SRCDIR
\getenv abs_builddir PG_ABS_BUILDDIR
CREATE TEMP TABLE input (target text, file text, data bytea);
INSERT INTO input
SELECT t.target, d || '/' || f, pg_read_binary_file(:'abs_srcdir' || '/test/fuzz/' || d || '/' || t.target || '/' || f)
  FROM unnest(ARRAY['token_text', 'token_binary', 'base64url', 'cose_key',
                    'authdata', 'clientdata', 'redact']) t(target),
       unnest(ARRAY['corpus', 'regressions']) d,
       LATERAL pg_ls_dir(:'abs_srcdir' || '/test/fuzz/' || d || '/' || t.target, true, false) f;
SELECT target, count(*) > 0 AS has_inputs FROM input GROUP BY target ORDER BY target;

-- The input as text, or NULL when it is not valid UTF-8 (SQL cannot pass it).
CREATE FUNCTION pg_temp.as_text(b bytea) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN convert_from(b, 'UTF8');
EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
  RETURN NULL;
END
$$;

-- fuzz.h's FuzzField framing: n - 1 fields of a 2-byte length and the
-- bytes, then the rest of the input, unframed.
CREATE FUNCTION pg_temp.fields(b bytea, n int) RETURNS bytea[] LANGUAGE plpgsql AS $$
DECLARE
  r bytea[] := '{}';
  pos int := 1;
  len int;
BEGIN
  FOR i IN 1 .. n - 1 LOOP
    IF length(b) - pos + 1 >= 2 THEN
      len := get_byte(b, pos - 1) * 256 + get_byte(b, pos);
      pos := pos + 2;
    ELSE
      len := 0;
      pos := length(b) + 1;
    END IF;
    len := least(len, length(b) - pos + 1);
    r := r || substr(b, pos, len);
    pos := pos + len;
  END LOOP;
  RETURN r || substr(b, pos);
END
$$;

-- What each input got: 'ok ...', or the SQLSTATE of the error.
CREATE FUNCTION pg_temp.outcome(target text, data bytea) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  txt text := pg_temp.as_text(data);
  f bytea[];
  r text;
  n bigint;
BEGIN
  CASE target
  WHEN 'token_text' THEN
    IF txt IS NULL THEN RETURN 'not text'; END IF;
    BEGIN
      PERFORM txt::authctx.token;
      r := 'ok';
    EXCEPTION WHEN OTHERS THEN
      r := SQLSTATE;
    END;
    BEGIN
      PERFORM auth_begin(txt);
      RETURN r || ', auth_begin ok';
    EXCEPTION WHEN OTHERS THEN
      RETURN r || ', auth_begin ' || SQLSTATE;
    END;
  WHEN 'token_binary' THEN
    -- a binary COPY file of one bytea field holds exactly these bytes,
    -- which COPY FROM hands to authctx.token's receive function
    EXECUTE format('COPY (SELECT %L::bytea) TO %L (FORMAT binary)',
                   data, current_setting('fuzz.dir') || '/fuzz_token_recv.bin');
    BEGIN
      EXECUTE format('COPY pg_temp.recv FROM %L (FORMAT binary)',
                     current_setting('fuzz.dir') || '/fuzz_token_recv.bin');
      RETURN 'ok';
    EXCEPTION WHEN OTHERS THEN
      RETURN SQLSTATE;
    END;
  WHEN 'base64url' THEN
    IF txt IS NULL THEN RETURN 'not text'; END IF;
    f := ARRAY[authctx._webauthn_b64url_decode(txt)];
    IF f[1] IS NULL THEN RETURN 'null'; END IF;
    -- one spelling: encoding the bytes again gives the input back
    IF translate(rtrim(replace(encode(f[1], 'base64'), E'\n', ''), '='), '+/', '-_') <> txt THEN
      RETURN 'decoded a non-canonical spelling';
    END IF;
    RETURN 'ok';
  WHEN 'cose_key' THEN
    BEGIN
      n := authctx._webauthn_key_alg(data);
      RETURN CASE WHEN n IN (-8, -7) THEN 'ok' ELSE 'alg ' || n END;
    EXCEPTION WHEN OTHERS THEN
      RETURN SQLSTATE;
    END;
  WHEN 'authdata' THEN
    f := pg_temp.fields(data, 5);
    txt := pg_temp.as_text(f[5]);
    IF txt IS NULL THEN RETURN 'not text'; END IF;
    n := authctx._webauthn_check_assertion(f[1], f[2], f[3], f[4], txt);
    RETURN CASE WHEN n >= 0 THEN 'ok' WHEN n >= -4 THEN 'refused' ELSE 'code ' || n END;
  WHEN 'clientdata' THEN
    RETURN 'ok ' || coalesce(authctx.verify_webauthn('\x00'::bytea,
             '\xa379a6f6eeafb9a55e378c118034e2751e682fab9f2d30ab13d2125586ce19470500000001'::bytea,
             data, '\x00'::bytea, 'example.com', 'https://example.com')::text, 'null');
  WHEN 'redact' THEN
    IF txt IS NULL THEN RETURN 'not text'; END IF;
    -- the server log only; emit_log_hook scans it
    RAISE LOG '%', txt;
    RETURN 'ok';
  END CASE;
END
$$;
CREATE TEMP TABLE recv (t authctx.token);
SELECT set_config('fuzz.dir', :'abs_builddir', false) IS NOT NULL AS dir_set;

CREATE TEMP TABLE result AS
SELECT target, file, pg_temp.outcome(target, data) AS outcome FROM input;

-- Anything but the documented answers: none.
SELECT target, file, outcome
  FROM result
 WHERE NOT CASE target
         WHEN 'token_text' THEN outcome IN ('not text', 'ok, auth_begin 28000', '22P02, auth_begin 28000')
         WHEN 'token_binary' THEN outcome IN ('ok', '22P03')
         WHEN 'base64url' THEN outcome IN ('not text', 'ok', 'null')
         WHEN 'cose_key' THEN outcome IN ('ok', '22023')
         WHEN 'authdata' THEN outcome IN ('not text', 'ok', 'refused')
         WHEN 'clientdata' THEN outcome = 'ok null'
         WHEN 'redact' THEN outcome IN ('not text', 'ok')
       END
 ORDER BY target, file;
-- The seeds are valid: each is accepted where acceptance can be seen (an
-- assertion seed verifies and yields its counter).
SELECT target, file, outcome
  FROM result
 WHERE file LIKE 'corpus/%'
   AND target IN ('token_text', 'token_binary', 'base64url', 'cose_key', 'authdata')
   AND outcome NOT LIKE 'ok%'
 ORDER BY target, file;
