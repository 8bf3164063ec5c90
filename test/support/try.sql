-- Test support, the one helper for statements expected to fail: run a
-- statement and report 'ok', or its SQLSTATE and message instead of
-- failing, so expected output shows both.  Loaded with \i by every SQL
-- test that needs it; err() is the same rule under the name older tests use.
CREATE OR REPLACE FUNCTION public.try(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
CREATE OR REPLACE FUNCTION public.err(stmt text) RETURNS text
LANGUAGE sql AS $$ SELECT public.try(stmt) $$;
GRANT EXECUTE ON FUNCTION public.try(text), public.err(text) TO PUBLIC;
