# authctx — PGXS build.
#
# This Makefile must work on a fresh machine where PGXS is not installed yet:
# `make test` and `make demo` only call scripts that install what they need
# and then re-enter this Makefile for the PGXS targets.

EXTENSION  = authctx
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

# The parsers of untrusted bytes: plain C over buffers (src/parse.h), built
# into the extension and, without PostgreSQL, into the libFuzzer targets of
# test/fuzz.  A new parser file is one more line here.
PARSER_SRCS = \
	src/base64url.c \
	src/jwk.c \
	src/jws.c \
	src/pkey.c \
	src/redact_scan.c \
	src/sjson.c \
	src/token_parse.c \
	src/webauthn_parse.c

MODULE_big = authctx
OBJS = \
	$(PARSER_SRCS:.c=.o) \
	src/authctx.o \
	src/audit.o \
	src/cache.o \
	src/cache_coherence.o \
	src/cache_standby.o \
	src/cleanup.o \
	src/context.o \
	src/context_accessors.o \
	src/crypto.o \
	src/fetch.o \
	src/identity.o \
	src/issuer.o \
	src/jwt.o \
	src/otp.o \
	src/redact.o \
	src/request.o \
	src/seen.o \
	src/session.o \
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

# Tests against an installed, running server, as in every PGXS extension
# (PGHOST, PGPORT, PGUSER choose it; the user must be a superuser):
#   make installcheck            sql/*.sql and test/specs/*.spec, any server
#                                configuration, preloaded or not
#   make installcheck-preload    the preload_* ones: need
#                                shared_preload_libraries = 'authctx'
#   make installcheck-nopreload  the nopreload_* ones: need it unset
#   make prove_installcheck      the TAP tests (test/t/*.pl), which start
#                                their own clusters from the installed
#                                binaries; run as a non-root user
# `make test` (test/run) runs all of them on throwaway instances, in both
# preload modes; its pg_regress options are its own.
MODE_TESTS     = preload_% nopreload_%
ALL_REGRESS    = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
ALL_ISOLATION  = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
REGRESS        = $(filter-out $(MODE_TESTS),$(ALL_REGRESS))
ISOLATION      = $(filter-out $(MODE_TESTS),$(ALL_ISOLATION))
ISOLATION_OPTS = --inputdir=test
PROVE_TESTS   ?= test/t/*.pl

PG_CPPFLAGS += -I$(srcdir)/src -DAUTHCTX_VERSION='"$(EXTVERSION)"'
SHLIB_LINK  += -lsodium -lcrypto -licuuc
EXTRA_CLEAN  = $(DATA_built) META.json tmp_check tmp_check_iso results output_iso log regression.diffs regression.out $(FUZZ_OUT)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

.DEFAULT_GOAL := all
.PHONY: test demo demo-sql deps bench bench-jwt fuzz fuzz-build fuzz-smoke fuzz-coverage

# Targets that must run before PGXS exists.
test:
	bash test/run

demo:
	KEEP='$(KEEP)' bash examples/demo.sh

demo-sql:
	bash examples/demo-sql.sh

deps:
	bash test/deps

# bench/standby (the hot-standby comparison) runs when it is there
bench:
	bash bench/run
	bash bench/jwt
	if [ -e bench/standby ]; then bash bench/standby; else echo 'bench/standby: not in this tree, skipped'; fi

bench-jwt:
	bash bench/jwt

# PGXN: META.json is generated from META.json.in with the control file's
# version, so that the version is written in one place; `make dist` builds
# the release archive (the committed tree of HEAD plus META.json).
.PHONY: dist
META.json: META.json.in $(EXTENSION).control
	sed 's/@VERSION@/$(EXTVERSION)/g' META.json.in > $@

dist: META.json
	/usr/bin/python3 test/pgxn_meta.py META.json --root .
	git archive --format zip --prefix=$(EXTENSION)-$(EXTVERSION)/ \
		--add-file=META.json -o $(EXTENSION)-$(EXTVERSION).zip HEAD

# libFuzzer targets (docs/fuzzing.md): each test/fuzz/<target>.c is one
# target, linked with every parser of PARSER_SRCS; no PostgreSQL needed.
# `make fuzz` runs each for FUZZ_SECONDS (and at most FUZZ_RUNS executions
# when set); `make fuzz-smoke` replays the corpora and regression cases and
# fuzzes each target briefly (make test runs it); `make fuzz-coverage`
# reports the parsers' line and branch coverage by the corpora.
FUZZ_CC      ?= $(firstword $(shell command -v clang-14 clang 2>/dev/null) clang)
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS  ?= -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror
FUZZ_OUT      = test/fuzz/build
FUZZ_TARGETS  = $(basename $(notdir $(wildcard test/fuzz/*.c)))
FUZZ_SECONDS ?= 60
FUZZ_RUNS    ?=

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_OUT)/%)

$(FUZZ_OUT)/obj/%.o: src/%.c src/parse.h src/jwk.h src/jws.h src/pkey.h src/sjson.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -Isrc -c -o $@ $<

$(FUZZ_OUT)/%: test/fuzz/%.c test/fuzz/fuzz.h $(PARSER_SRCS:src/%.c=$(FUZZ_OUT)/obj/%.o)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -Isrc -o $@ $< \
		$(PARSER_SRCS:src/%.c=$(FUZZ_OUT)/obj/%.o) -lsodium -lcrypto

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RUNS=$(FUZZ_RUNS) bash test/fuzz/run $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	bash test/fuzz/run --smoke $(FUZZ_TARGETS)

fuzz-coverage:
	bash test/fuzz/coverage $(FUZZ_TARGETS)

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)

# every module includes the shared header
$(OBJS): src/authctx.h src/compat.h src/parse.h
# the JWT code's own headers (plain C, no server headers)
src/issuer.o src/jwk.o src/jws.o src/pkey.o src/sjson.o: src/jwk.h src/jws.h src/pkey.h src/sjson.h
# the library's version comes from the control file
src/authctx.o: $(EXTENSION).control

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_SOURCES) $(EXTENSION).control
	cat $(SQL_SOURCES) > $@

# The preload-mode tests, against a server in that mode (checked first: a
# preload_* test on a server without the cache would fail or wait forever).
.PHONY: installcheck-preload installcheck-nopreload prove_installcheck
installcheck-preload installcheck-nopreload: installcheck-%:
	@spl=$$('$(bindir)/psql' -XAtqc 'SHOW shared_preload_libraries' postgres) || exit 1; \
	case ",$$(echo "$$spl" | tr -d ' ')," in *,authctx,*) mode=preload ;; *) mode=nopreload ;; esac; \
	if [ "$$mode" != '$*' ]; then \
		echo "make $@: these tests need a server in $* mode; this one has shared_preload_libraries = '$$spl'" >&2; \
		exit 1; \
	fi
	$(if $(filter $*_%,$(ALL_REGRESS)),$(pg_regress_installcheck) --dbname=$(CONTRIB_TESTDB) $(filter $*_%,$(ALL_REGRESS)))
	$(if $(filter $*_%,$(ALL_ISOLATION)),$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(filter $*_%,$(ALL_ISOLATION)))

# PGXS defines the recipe (prove over PROVE_TESTS with the installed
# binaries first in PATH); only the target is ours, since the TAP tests stay
# out of `make installcheck`.
prove_installcheck:
	@if [ "$$(id -u)" = 0 ]; then \
		echo "make $@: the TAP tests start PostgreSQL servers, which refuse to run as root; run it as another user (runuser -u postgres -- make $@), or run make test" >&2; \
		exit 1; \
	fi
	$(prove_installcheck)
else
all install installcheck installcheck-preload installcheck-nopreload prove_installcheck clean:
	@echo "PGXS not found (install postgresql-server-dev-15, or run 'make deps')" >&2; exit 1
endif
