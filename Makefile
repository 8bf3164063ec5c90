# authctx — PGXS build.
#
# This Makefile must work on a fresh machine where PGXS is not installed yet:
# `make test` and `make demo` only call scripts that install what they need
# and then re-enter this Makefile for the PGXS targets.

EXTENSION  = authctx
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = authctx
OBJS = \
	src/authctx.o \
	src/audit.o \
	src/cache.o \
	src/cleanup.o \
	src/context.o \
	src/crypto.o \
	src/fetch.o \
	src/identity.o \
	src/issuer.o \
	src/jwk.o \
	src/jws.o \
	src/pkey.o \
	src/redact.o \
	src/request.o \
	src/seen.o \
	src/session.o \
	src/sjson.o \
	src/tenant.o \
	src/token.o \
	src/webauthn.o \
	src/worker.o

# One SQL source (split by module under src/sql, concatenated in name order)
# builds the versioned install script.  Released scripts are never edited:
# changes ship as authctx--A--B.sql upgrade scripts.
# Earlier versions' install scripts stay shipped (frozen, like contrib's),
# so that `CREATE EXTENSION authctx VERSION '0.1.0'` and the upgrade test
# work.
SQL_SOURCES = $(sort $(wildcard src/sql/*.sql))
DATA_built  = $(EXTENSION)--$(EXTVERSION).sql
DATA        = $(filter-out $(DATA_built),$(wildcard $(EXTENSION)--*.sql))

# pg_regress: every sql/*.sql, on a throwaway instance (test/run drives both
# preload modes; `make installcheck` alone runs the non-preloaded mode).
REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-instance=tmp_check --temp-config=test/nopreload.conf
ISOLATION      = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --temp-instance=tmp_check_iso --temp-config=test/preload.conf

PG_CPPFLAGS += -I$(srcdir)/src -DAUTHCTX_VERSION='"$(EXTVERSION)"'
SHLIB_LINK  += -lsodium -lcrypto -licuuc
EXTRA_CLEAN  = $(DATA_built) tmp_check tmp_check_iso results output_iso log regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

.DEFAULT_GOAL := all
.PHONY: test demo deps bench

# Targets that must run before PGXS exists.
test:
	bash test/run

demo:
	bash examples/demo.sh

deps:
	bash test/deps

bench:
	bash bench/run

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)

# every module includes the shared header
$(OBJS): src/authctx.h src/compat.h
# the JWT code's own headers (plain C, no server headers)
src/issuer.o src/jwk.o src/jws.o src/pkey.o src/sjson.o: src/jwk.h src/jws.h src/pkey.h src/sjson.h
# the library's version comes from the control file
src/authctx.o: $(EXTENSION).control

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_SOURCES) $(EXTENSION).control
	cat $(SQL_SOURCES) > $@
else
all install installcheck clean:
	@echo "PGXS not found (install postgresql-server-dev-15, or run 'make deps')" >&2; exit 1
endif
