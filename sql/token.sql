-- The authctx.token type: text and binary I/O, checksum, kinds, lengths.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

\i test/support/try.sql

CREATE TEMP TABLE tok AS
SELECT k AS kind, authctx._token_new(k) AS t
  FROM unnest(ARRAY['session', 'refresh', 'api_key']) k;

-- shape: prefix per kind, 74 characters from [A-Za-z0-9_-]
SELECT kind, left(t::text, 4) AS prefix, length(t::text) AS len,
       t::text ~ '^ax[srk]_[A-Za-z0-9_-]{70}$' AS alphabet_ok,
       authctx._token_kind(t) AS kind_back,
       substr(authctx._token_id(t)::text, 15, 1) AS uuid_version,
       length(authctx._token_verifier(t)) AS verifier_len
  FROM tok ORDER BY kind;

-- text round trip
SELECT kind, (t::text)::authctx.token::text = t::text AS roundtrip,
       authctx._token_id((t::text)::authctx.token) = authctx._token_id(t) AS same_id,
       authctx._token_verifier((t::text)::authctx.token) = authctx._token_verifier(t) AS same_verifier
  FROM tok ORDER BY kind;

-- fresh tokens are distinct; verifiers differ
SELECT count(DISTINCT x::text) AS distinct_tokens,
       count(DISTINCT authctx._token_id(x)) AS distinct_ids,
       count(DISTINCT authctx._token_verifier(x)) AS distinct_verifiers
  FROM (SELECT authctx._token_new('session') AS x FROM generate_series(1, 200)) s;
SELECT public.err($$SELECT authctx._token_new('bogus')$$) AS unknown_kind;

-- bad input: 22P02, and the message never contains the input
CREATE TEMP TABLE bad (label text, input text);
INSERT INTO bad
SELECT 'empty', ''
UNION ALL SELECT 'prefix only', 'axs_'
UNION ALL SELECT 'no prefix', substr(t::text, 5) FROM tok WHERE kind = 'session'
UNION ALL SELECT 'unknown prefix', 'axz_' || substr(t::text, 5) FROM tok WHERE kind = 'session'
UNION ALL SELECT 'truncated', left(t::text, 73) FROM tok WHERE kind = 'session'
UNION ALL SELECT 'extended', t::text || 'A' FROM tok WHERE kind = 'session'
UNION ALL SELECT 'bad character', overlay(t::text placing '!' from 30 for 1) FROM tok WHERE kind = 'session'
UNION ALL SELECT 'base64 padding', overlay(t::text placing '=' from 74 for 1) FROM tok WHERE kind = 'session'
UNION ALL SELECT 'standard base64', overlay(t::text placing '+' from 30 for 1) FROM tok WHERE kind = 'refresh'
UNION ALL SELECT 'kind swapped', 'axr_' || substr(t::text, 5) FROM tok WHERE kind = 'session'
UNION ALL SELECT 'trailing space', t::text || ' ' FROM tok WHERE kind = 'api_key'
UNION ALL SELECT 'garbage', 'hunter2-is-not-a-token';
SELECT b.label, public.err(format('SELECT %L::authctx.token', b.input)) AS result
  FROM bad b ORDER BY b.label;
SELECT count(*) AS messages_echoing_input
  FROM bad b
 WHERE b.input <> ''
   AND (position(b.input IN public.err(format('SELECT %L::authctx.token', b.input))) > 0
        OR (length(b.input) >= 20
            AND position(substr(b.input, 5, 16) IN public.err(format('SELECT %L::authctx.token', b.input))) > 0));
-- the detail does not echo it either
DO $$
DECLARE
  v_detail text;
  v_input  text := 'axs_' || repeat('Q', 70);
BEGIN
  PERFORM v_input::authctx.token;
EXCEPTION WHEN invalid_text_representation THEN
  GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
  RAISE NOTICE 'detail mentions input: %', position(repeat('Q', 10) IN v_detail) > 0;
END
$$;

-- the checksum catches every one-character change
SELECT kind,
       count(*) AS changes,
       count(*) FILTER (WHERE public.err(format('SELECT %L::authctx.token', changed)) = 'ok') AS accepted
  FROM (SELECT kind,
               overlay(t::text placing
                       CASE WHEN substr(t::text, i, 1) = 'A' THEN 'B' ELSE 'A' END
                       from i for 1) AS changed
          FROM tok, generate_series(5, 74) i) c
 GROUP BY kind ORDER BY kind;
-- and every swap of two neighbouring, different characters
SELECT count(*) FILTER (WHERE public.err(format('SELECT %L::authctx.token', swapped)) = 'ok') AS swaps_accepted
  FROM (SELECT overlay(t::text placing substr(t::text, i + 1, 1) || substr(t::text, i, 1)
                       from i for 2) AS swapped
          FROM tok, generate_series(5, 73) i
         WHERE substr(t::text, i, 1) <> substr(t::text, i + 1, 1)) s;

-- binary output: kind byte, 16-byte id, 32-byte secret
SELECT kind, length(authctx.token_send(t)) AS send_len,
       chr(get_byte(authctx.token_send(t), 0)) AS kind_byte,
       substr(authctx.token_send(t), 2, 16) = uuid_send(authctx._token_id(t)) AS id_bytes_ok
  FROM tok ORDER BY kind;

-- binary round trip through COPY BINARY (token_send / token_recv)
SELECT current_setting('data_directory') || '/authctx_token_test.copy' AS copyfile \gset
COPY (SELECT kind, t FROM tok ORDER BY kind) TO :'copyfile' (FORMAT binary);
CREATE TEMP TABLE tok_back (kind text, t authctx.token);
COPY tok_back FROM :'copyfile' (FORMAT binary);
SELECT b.kind, b.t::text = o.t::text AS binary_roundtrip
  FROM tok_back b JOIN tok o USING (kind) ORDER BY b.kind;
-- a corrupted kind byte is refused on binary input (22P03): the first
-- tuple's token starts after the 19-byte header, 2-byte field count,
-- 4-byte length, the kind field ("api_key", 4 + 7 bytes) and 4-byte length
SELECT pg_read_binary_file(:'copyfile') AS good \gset
SELECT chr(get_byte(:'good'::bytea, 19 + 2 + 4 + 7 + 4)) AS first_kind_byte;
COPY (SELECT translate(encode(set_byte(:'good'::bytea, 19 + 2 + 4 + 7 + 4, ascii('x')), 'base64'), E'\n', ''))
  TO PROGRAM 'base64 -d > authctx_token_bad.copy';
SELECT current_setting('data_directory') || '/authctx_token_bad.copy' AS badfile \gset
CREATE TEMP TABLE tok_bad (kind text, t authctx.token);
SELECT public.err(format('COPY tok_bad FROM %L (FORMAT binary)', :'badfile')) AS corrupted_binary;
SELECT count(*) AS loaded FROM tok_bad;

-- NULL in, NULL out (strict helpers)
SELECT authctx._token_id(NULL) IS NULL AS id_null, authctx._token_kind(NULL) IS NULL AS kind_null,
       authctx._token_verifier(NULL) IS NULL AS verifier_null, NULL::text::authctx.token IS NULL AS cast_null;

-- the internal helpers are not for PUBLIC
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public
  FROM pg_proc p
 WHERE p.pronamespace = 'authctx'::regnamespace AND p.proname LIKE '\_token\_%'
 ORDER BY p.proname;
