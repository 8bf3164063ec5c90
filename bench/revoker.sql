-- revoker: revoke the next session of the revocation pool (through
-- authctx.revoke_session when it exists, see load.sql) in one transaction,
-- then record the time in a second transaction that starts after the first
-- one has committed.  Any authentication of that token that starts later
-- must fail.  One compound query (one round trip) per revocation; run by one
-- client at a fixed rate (pgbench -R), in the simple query protocol.
BEGIN \; SELECT bench.revoke_next() \; COMMIT \;
INSERT INTO bench.revoke_log
SELECT current_setting('bench.run', true), currval('bench.revoke_seq'), clock_timestamp();
