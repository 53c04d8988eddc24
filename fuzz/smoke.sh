#!/usr/bin/env bash
# Fuzz smoke test for CI: builds the verify-core fuzz targets and runs each one for a
# short, bounded time on a generated seed corpus.
#
#   bash fuzz/smoke.sh            # from anywhere; 20 s per target
#   FUZZ_SECONDS=60 bash fuzz/smoke.sh
#
# Modes (chosen automatically):
#   fuzz    cargo-fuzz is available: `cargo fuzz run` each target for FUZZ_SECONDS.
#           cargo-fuzz works on stable with `-s none` (coverage instrumentation only needs
#           stable flags); AddressSanitizer (`-s address`) needs a nightly toolchain.
#   replay  no cargo-fuzz (and FUZZ_INSTALL=0 or the install failed): builds the targets
#           with plain cargo and runs every seed input through them once. No fuzzing:
#           this is said loudly.
#   skip    no cargo at all: says so loudly and exits 0.
#
# Exit status:
#   0  every target ran clean (or fuzzing was skipped for a missing tool, printed loudly)
#   1  a target crashed: panic, failed assertion, OOM or timeout. The reproducer is kept
#      under fuzz/artifacts/<target>/ and printed in hex, with the command to replay it.
#   2  the fuzz crate does not build (e.g. verify-core's API changed under the targets).
#   3  the fuzzer itself failed without leaving a reproducer (see the printed log).
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_TARGETS    space-separated targets (default: all)
#   FUZZ_SANITIZER  none | address (default none: ~4x the executions; verify-core is
#                   `forbid(unsafe_code)`, so the sanitizer mostly guards dependencies)
#   FUZZ_TOOLCHAIN  rustup toolchain for cargo (default: nightly if installed, else the
#                   default toolchain)
#   FUZZ_INSTALL    1 (default) = `cargo install cargo-fuzz --locked` when it is missing
#   FUZZ_LOG_DIR    where per-target logs go (default: fuzz/target/smoke-logs)
set -uo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SECS="${FUZZ_SECONDS:-20}"
TARGETS=(${FUZZ_TARGETS:-record_decode verifier_stream verifier_mutate verifier_resign pack_reader manifest_decode receipt_v5 sandbox_module})
SAN="${FUZZ_SANITIZER:-none}"
INSTALL="${FUZZ_INSTALL:-1}"
LOG_DIR="${FUZZ_LOG_DIR:-$FUZZ_DIR/target/smoke-logs}"
CORPUS="$FUZZ_DIR/corpus"
ARTIFACTS="$FUZZ_DIR/artifacts"

loud() {
    echo
    echo "######################################################################"
    for line in "$@"; do echo "### $line"; done
    echo "######################################################################"
    echo
}

hexdump_file() {
    if command -v xxd >/dev/null 2>&1; then xxd -p "$1" | tr -d '\n'; else od -An -v -tx1 "$1" | tr -d ' \n'; fi
    echo
}

if ! command -v cargo >/dev/null 2>&1; then
    loud "FUZZ SMOKE SKIPPED: cargo is not on PATH." "No fuzz target was built or run."
    echo "fuzz: 0 passed, 0 failed, ${#TARGETS[@]} skipped"
    exit 0
fi

# Toolchain: nightly when rustup has it (ASan possible), else the default one.
TC=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    TC=("+$FUZZ_TOOLCHAIN")
elif command -v rustup >/dev/null 2>&1 && cargo +nightly --version >/dev/null 2>&1; then
    TC=("+nightly")
fi
TC_NAME="$(cargo "${TC[@]}" --version 2>/dev/null) / $(rustc "${TC[@]}" --version 2>/dev/null)"
if [ "$SAN" != "none" ] && ! rustc "${TC[@]}" --version 2>/dev/null | grep -q nightly; then
    loud "FUZZ_SANITIZER=$SAN needs a nightly toolchain; none found." "Falling back to -s none (coverage-guided fuzzing still works on stable)."
    SAN=none
fi

mkdir -p "$LOG_DIR" "$CORPUS" "$ARTIFACTS"

have_cargo_fuzz() { cargo "${TC[@]}" fuzz --version >/dev/null 2>&1; }
if ! have_cargo_fuzz && [ "$INSTALL" = "1" ]; then
    echo "cargo-fuzz not found: installing it (cargo install cargo-fuzz --locked, ~2 min) ..."
    timeout 900 cargo install cargo-fuzz --locked >"$LOG_DIR/install-cargo-fuzz.log" 2>&1 ||
        echo "cargo install cargo-fuzz failed; see $LOG_DIR/install-cargo-fuzz.log"
fi

gen_seeds() {
    echo "== generating seed corpora into $CORPUS"
    if ! cargo "${TC[@]}" run -q --manifest-path "$FUZZ_DIR/Cargo.toml" --example gen_seeds -- "$CORPUS" \
        >"$LOG_DIR/gen-seeds.log" 2>&1; then
        cat "$LOG_DIR/gen-seeds.log"
        loud "FUZZ SMOKE FAILED: the seed generator (examples/gen_seeds.rs) did not build or its" \
            "fixture self-check failed (the valid stream no longer verifies?). Log above."
        exit 2
    fi
    tail -n 1 "$LOG_DIR/gen-seeds.log"
}

report_crash() { # target, log, artifact
    echo "---- $1: what failed (full log: $2)"
    grep -E -A12 'panicked at|==[0-9]+==ERROR|^SUMMARY|deadly signal|out-of-memory|timeout after' "$2" | grep -v '^#[0-9]' | head -n 60
    echo "---- reproducer $3 ($(wc -c <"$3") bytes), hex:"
    hexdump_file "$3"
    echo "---- replay: cargo ${TC[*]} fuzz run -s $SAN --fuzz-dir $FUZZ_DIR $1 $3"
}

if ! have_cargo_fuzz; then
    # ---- replay mode: no fuzzing, but every seed still runs through every target.
    loud "FUZZING SKIPPED: cargo-fuzz is not installed (FUZZ_INSTALL=$INSTALL)." \
        "Only replaying the seed corpora through plain builds of the targets." \
        "Install it with: cargo install cargo-fuzz --locked"
    echo "== building fuzz targets with plain cargo ($TC_NAME)"
    if ! cargo "${TC[@]}" build --release --bins --manifest-path "$FUZZ_DIR/Cargo.toml" >"$LOG_DIR/build.log" 2>&1; then
        tail -n 60 "$LOG_DIR/build.log"
        loud "FUZZ SMOKE FAILED: the fuzz targets do not build (log above)."
        exit 2
    fi
    gen_seeds
    failed=0
    for t in "${TARGETS[@]}"; do
        log="$LOG_DIR/$t.replay.log"
        if "$FUZZ_DIR/target/release/$t" -runs=0 -timeout=25 "$CORPUS/$t" >"$log" 2>&1; then
            echo "replay $t: $(ls "$CORPUS/$t" | wc -l) seed inputs, ok"
        else
            echo "replay $t: CRASHED (full log: $log)"
            grep -E -A12 'panicked at|==[0-9]+==ERROR|^SUMMARY|deadly signal|Running:' "$log" | head -n 60
            failed=$((failed + 1))
        fi
    done
    echo "fuzz-replay: $((${#TARGETS[@]} - failed)) passed, $failed failed"
    [ "$failed" -eq 0 ] || exit 1
    exit 0
fi

# ---- fuzz mode
echo "== cargo-fuzz: $(cargo "${TC[@]}" fuzz --version 2>/dev/null); toolchain: $TC_NAME; sanitizer: $SAN; ${SECS}s per target"
start=$(date +%s)
if ! cargo "${TC[@]}" fuzz build --fuzz-dir "$FUZZ_DIR" -s "$SAN" >"$LOG_DIR/build.log" 2>&1; then
    tail -n 60 "$LOG_DIR/build.log"
    loud "FUZZ SMOKE FAILED: cargo fuzz build failed (log above)."
    exit 2
fi
echo "   built in $(( $(date +%s) - start ))s"
gen_seeds

crashed=0
runner_errors=0
summary=()
for t in "${TARGETS[@]}"; do
    log="$LOG_DIR/$t.log"
    mkdir -p "$CORPUS/$t" "$ARTIFACTS/$t"
    before="$(ls "$ARTIFACTS/$t")"
    echo "== fuzzing $t for ${SECS}s"
    timeout $((SECS + 180)) cargo "${TC[@]}" fuzz run --fuzz-dir "$FUZZ_DIR" -s "$SAN" "$t" "$CORPUS/$t" -- \
        -max_total_time="$SECS" -timeout=25 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    new_artifacts=()
    for a in $(ls "$ARTIFACTS/$t"); do
        grep -qxF "$a" <<<"$before" || new_artifacts+=("$ARTIFACTS/$t/$a")
    done
    if [ "$rc" -eq 0 ]; then
        summary+=("$(printf '%-16s ok       %10s execs  %6s exec/s  cov %s' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}")")
    elif [ "${#new_artifacts[@]}" -gt 0 ]; then
        crashed=$((crashed + 1))
        summary+=("$(printf '%-16s CRASHED  %10s execs  %6s exec/s  -> %s' "$t" "${execs:-?}" "${eps:-?}" "${new_artifacts[*]}")")
        for a in "${new_artifacts[@]}"; do report_crash "$t" "$log" "$a"; done
    else
        runner_errors=$((runner_errors + 1))
        summary+=("$(printf '%-16s ERROR    exit %s, no reproducer; log: %s' "$t" "$rc" "$log")")
        tail -n 40 "$log"
    fi
done

echo
echo "== fuzz smoke summary (${SECS}s per target, sanitizer $SAN, total $(( $(date +%s) - start ))s)"
printf '%s\n' "${summary[@]}"
failed=$((crashed + runner_errors))
echo "fuzz: $((${#TARGETS[@]} - failed)) passed, $failed failed"
if [ "$crashed" -gt 0 ]; then
    loud "FUZZ SMOKE FAILED: $crashed target(s) crashed; reproducers above and under $ARTIFACTS."
    exit 1
fi
if [ "$runner_errors" -gt 0 ]; then
    loud "FUZZ SMOKE FAILED: the fuzzer exited abnormally without a reproducer (logs above)."
    exit 3
fi
exit 0
