#!/usr/bin/env bash
# test/fuzz/issuer-fuzz.sh: build and run the libFuzzer targets of the JWT
# code (src/sjson.c, src/jws.c, src/jwk.c, src/pkey.c: plain C, no server).
#
#   test/fuzz/issuer-fuzz.sh [seconds per target] [target...]
#
# Targets: sjson (the strict JSON reader), jws (tokens, and JSON payloads
# behind a fixed header, with the signature paths), jwks (JWK Sets and key
# validation).  Seeds come from test/fuzz/corpus/<target> (written by
# test/fixtures/jwt/gen.py); what the fuzzer finds goes to $FUZZ_OUT
# (default /tmp/authctx-fuzz-issuer), which also holds the binaries.
# Needs clang-14 and libfuzzer-14-dev, libsodium-dev, libssl-dev.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-sjson jws jwks}
out=${FUZZ_OUT:-/tmp/authctx-fuzz-issuer}
cc=${CC:-clang-14}
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc"
mkdir -p "$out"

for t in $targets; do
	echo "== fuzz_$t: build"
	# shellcheck disable=SC2086
	$cc $flags src/sjson.c src/jws.c src/jwk.c src/pkey.c "test/fuzz/fuzz_$t.c" \
		-lsodium -lcrypto -o "$out/fuzz_$t"
	mkdir -p "$out/corpus_$t"
	seeds=()
	[ -d "test/fuzz/corpus/$t" ] && seeds=("test/fuzz/corpus/$t")
	echo "== fuzz_$t: run ${secs}s"
	"$out/fuzz_$t" -max_total_time="$secs" -max_len=20000 -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$out/crash_${t}_" "$out/corpus_$t" "${seeds[@]}"
done
