-- Test support: run a statement and report its SQLSTATE and message
-- instead of failing, so expected output shows both.  Loaded with \ir.
CREATE OR REPLACE FUNCTION public.try(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION public.try(text) TO PUBLIC;
