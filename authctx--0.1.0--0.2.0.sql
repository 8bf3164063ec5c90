-- authctx 0.1.0 -> 0.2.0
--
-- Every change to the schema since 0.1.0, in the order the sections were
-- added.  The result must equal a fresh install of 0.2.0 (test/t/050_upgrade.pl
-- compares the two), and no row may be lost.
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION authctx UPDATE TO '0.2.0'" to load this file. \quit
