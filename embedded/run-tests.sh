#!/usr/bin/env bash
# The verifier where it must run: a Cortex-M4 firmware under QEMU, a C program through the
# C ABI, and a browser page in headless Chromium, each compared with `helm-airgap verify
# --json` on the same pack vectors. Prints one table; exits non-zero on any mismatch or
# on any part that could not run (a missing tool is installed, or reported loudly; it is
# never skipped silently).
#
#   embedded/run-tests.sh                 everything
#   embedded/run-tests.sh --stage NAME    one part: firmware, capi, web, cli
#
# Installs what is missing: qemu-system-arm and chromium (Debian packages, apt-get),
# cbindgen (crates.io), playwright-core (npm, embedded/web/package-lock.json), the Rust
# targets thumbv7em-none-eabihf and wasm32-unknown-unknown and llvm-tools (rustup).
set -euo pipefail

EMBEDDED="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$EMBEDDED/.." && pwd)"
SELF="$EMBEDDED/run-tests.sh"
CBINDGEN_VERSION="0.29.4"
PACKS="$REPO/test-vectors/packs"
TRUST_ROOT="$REPO/test-vectors/keys/trust-root.json"
# Budgets for the firmware (reported against, not enforced).
CODE_GOAL=$((96 * 1024))
RAM_GOAL=$((32 * 1024))

loud() { # loud LINE [LINE...]: a message that cannot be missed
  printf '\n!!!! %s\n' "$1" >&2
  shift
  for l in "$@"; do printf '     %s\n' "$l" >&2; done
}
step() { printf '\n==== %s ====\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

APT_UPDATED=0
apt_install() { # apt_install COMMAND PACKAGE: installs PACKAGE unless COMMAND exists
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2 (Debian package) for $1"
  if [ "$APT_UPDATED" = 0 ]; then
    as_root apt-get update -qq || true
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$2" >/dev/null || true
  command -v "$1" >/dev/null 2>&1
}

llvm_tool() { # the llvm-tools (rustup component) binary, else one on PATH
  local p
  p="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/$1"
  if [ -x "$p" ]; then echo "$p"; else command -v "$1"; fi
}

# Pack vectors as "ID FILE ANCHORS EXPECT" lines (ANCHORS comma-separated hex; EXPECT
# accept:N or an error name); with "tar" only plain .tar files.
vectors() {
  python3 - "$PACKS/index.json" "${1:-all}" <<'EOF'
import json, sys
index = json.load(open(sys.argv[1]))
for p in index["packs"]:
    if sys.argv[2] == "tar" and not p["file"].endswith(".tar"):
        continue
    e = p["expect"]
    expect = f"accept:{e['records']}" if e["result"] == "accept" else e["error"]
    print(p["id"], p["file"], ",".join(p["anchors"]), expect)
EOF
}

target_dir() { # target_dir [DIR]: cargo's target directory for the workspace at DIR (honours CARGO_TARGET_DIR)
  (cd "${1:-$REPO}" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
}

# ---------------------------------------------------------------------------------------
# Stages. Each runs as its own process (so `set -e` holds inside it) and writes RESULT
# lines ("RESULT ID VERDICT", VERDICT = verified:N or CODE@INDEX) to $OUT/NAME.results.

stage_firmware() {
  step "firmware: Cortex-M4 (thumbv7em-none-eabihf) under QEMU mps2-an386"
  cd "$EMBEDDED/cortex-m"
  cargo fmt --check
  cargo clippy --release --bins -- -D warnings
  cargo build --release --bins
  local elf_dir
  elf_dir="$(target_dir "$EMBEDDED/cortex-m")/thumbv7em-none-eabihf/release"
  local qemu=(qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic
    -semihosting-config enable=on,target=native -kernel)
  local bad=0 out rc
  run_fw() { # run_fw BIN EXPECTED_LINE EXPECTED_RC
    set +e
    out="$(timeout 120 "${qemu[@]}" "$elf_dir/$1" 2>&1 </dev/null)"
    rc=$?
    set -e
    echo "--- $1 (exit $rc)"
    echo "$out"
    if ! grep -qxF "$2" <<<"$out" || [ "$rc" != "$3" ]; then
      loud "firmware $1: expected '$2' and exit $3"
      bad=1
    fi
  }
  run_fw valid "VERDICT verified records=28" 0
  local valid_out="$out"
  run_fw tampered "VERDICT failed code=SIGNATURE_INVALID number=201 index=27" 1
  local tampered_out="$out"
  set +e
  out="$(timeout 120 "${qemu[@]}" "$elf_dir/panic" 2>&1 </dev/null)"
  rc=$?
  set -e
  echo "--- panic (exit $rc)"
  echo "$out"
  if ! grep -q '^PANIC ' <<<"$out" || [ "$rc" = 0 ]; then
    loud "firmware panic: expected a PANIC line and a non-zero exit"
    bad=1
  fi

  for pair in "valid/small-run:$valid_out" "invalid/record-byte-flipped:$tampered_out"; do
    local id="${pair%%:*}" text="${pair#*:}" line verdict
    line="$(grep '^VERDICT ' <<<"$text" | head -1 || true)"
    case "$line" in
      "VERDICT verified records="*) verdict="verified:${line#VERDICT verified records=}" ;;
      "VERDICT failed "*)
        verdict="$(sed -E 's/^VERDICT failed code=([A-Z0-9_]+) number=[0-9]+ index=(.*)$/\1@\2/' <<<"$line")" ;;
      *) verdict="NO_VERDICT@-" ;;
    esac
    echo "RESULT $id $verdict" >>"$OUT/firmware.results"
  done

  # Code size: everything that goes to flash (vector table, .text, .rodata, .data's
  # initial values) minus the embedded pack, which lives in .rodata.
  local size nm pack_bytes
  size="$(llvm_tool llvm-size)"
  nm="$(llvm_tool llvm-nm)"
  pack_bytes=$(stat -c %s "$PACKS/valid/small-run.tar")
  "$size" -A "$elf_dir/valid" | grep -E '^\.(vector_table|text|rodata|data|bss|uninit) '
  python3 - "$size" "$nm" "$elf_dir/valid" "$pack_bytes" "$valid_out" "$CODE_GOAL" "$RAM_GOAL" \
    >"$OUT/firmware.sizes" <<'EOF'
import re, subprocess, sys
size, nm, elf, pack, out, code_goal, ram_goal = sys.argv[1:]
pack, code_goal, ram_goal = int(pack), int(code_goal), int(ram_goal)
sec = {}
for line in subprocess.run([size, "-A", elf], capture_output=True, text=True, check=True).stdout.splitlines():
    f = line.split()
    if len(f) >= 3 and f[0].startswith(".") and f[1].isdigit():
        sec[f[0]] = int(f[1])
g = lambda s: sec.get(s, 0)
# The pack must be one object of exactly its size in .rodata for the subtraction to hold.
syms = subprocess.run([nm, "-S", "--size-sort", elf], capture_output=True, text=True, check=True).stdout
in_rodata = any(l.split()[1:3] == [f"{pack:08x}", "r"] for l in syms.splitlines() if len(l.split()) >= 3)
flash = g(".vector_table") + g(".text") + g(".rodata") + g(".data")
code = flash - pack
m = re.search(r"MEMORY data=(\d+) bss=(\d+) stack_peak=(\d+) total=(\d+)", out)
data, bss, stack, ram = (int(x) for x in m.groups()) if m else (g(".data"), g(".bss") + g(".uninit"), -1, -1)
kb = lambda n: f"{n / 1024:.1f} KB"
print(f"code (flash without the pack): {code} bytes = {kb(code)}  "
      f"[.vector_table {g('.vector_table')} + .text {g('.text')} + .rodata {g('.rodata')} - pack {pack} + .data {g('.data')}]"
      f"  goal < {kb(code_goal)}: {'ok' if code < code_goal else 'OVER GOAL'}"
      f"{'' if in_rodata else '  (note: no single .rodata object of the pack size found)'}")
print(f"RAM: {ram} bytes = {kb(ram)}  [.data {data} + .bss {bss} + peak stack {stack} (painted and scanned)]"
      f"  goal < {kb(ram_goal)}: {'ok' if 0 <= ram < ram_goal else 'OVER GOAL'}")
EOF
  cat "$OUT/firmware.sizes"
  return $bad
}

stage_capi() {
  step "C ABI: helm-verify-capi (staticlib) and tests/test.c"
  cd "$REPO"
  local header="$EMBEDDED/capi/include/helm_verify.h" fresh="$OUT/helm_verify.h"
  (cd "$EMBEDDED/capi" && cbindgen --quiet --config cbindgen.toml --crate helm-verify-capi --output "$fresh")
  if ! diff -u "$header" "$fresh"; then
    loud "embedded/capi/include/helm_verify.h is out of date: regenerate it with" \
      "(cd embedded/capi && cbindgen --config cbindgen.toml --crate helm-verify-capi --output include/helm_verify.h)"
    return 1
  fi
  echo "header up to date: embedded/capi/include/helm_verify.h"
  cargo build -p helm-verify-capi
  # The no_std build a C firmware would link (not run here: the QEMU firmware is Rust).
  cargo build -p helm-verify-capi --no-default-features --features panic-handler --target thumbv7em-none-eabihf
  local lib
  lib="$(target_dir)/debug/libhelm_verify_capi.a"
  cc -std=c11 -Wall -Wextra -Werror -O2 -I"$EMBEDDED/capi/include" "$EMBEDDED/capi/tests/test.c" "$lib" \
    -lpthread -ldl -lm -lrt -lutil -lgcc_s -lc -o "$OUT/capi-test"
  local args=()
  while read -r id file anchors expect; do
    args+=("$id" "$PACKS/$file" "$anchors" "$expect")
  done < <(vectors tar)
  set +e
  "$OUT/capi-test" "${args[@]}" >"$OUT/capi.out"
  local rc=$?
  set -e
  grep -v '^RESULT ' "$OUT/capi.out"
  grep '^RESULT ' "$OUT/capi.out" >"$OUT/capi.results" || true
  return $rc
}

stage_web() {
  step "browser: wasm32-unknown-unknown verifier in headless Chromium"
  cd "$EMBEDDED/web/wasm"
  cargo fmt --check
  cargo clippy --release --target wasm32-unknown-unknown -- -D warnings
  cargo build --release --target wasm32-unknown-unknown
  mkdir -p "$EMBEDDED/web/pkg"
  cp "$(target_dir "$EMBEDDED/web/wasm")/wasm32-unknown-unknown/release/helm_verify_wasm.wasm" \
    "$EMBEDDED/web/pkg/helm_verify.wasm"
  echo "pkg/helm_verify.wasm: $(stat -c %s "$EMBEDDED/web/pkg/helm_verify.wasm") bytes"
  cd "$EMBEDDED/web"
  if [ ! -d node_modules/playwright-core ]; then
    npm ci --no-audit --no-fund
  fi
  set +e
  node tests/e2e.mjs >"$OUT/web.out" 2>&1
  local rc=$?
  set -e
  grep -v '^RESULT ' "$OUT/web.out"
  grep '^RESULT ' "$OUT/web.out" >"$OUT/web.results" || true
  echo "screenshots: embedded/web/screenshots/valid.png, embedded/web/screenshots/tampered.png"
  return $rc
}

stage_cli() {
  step "reference: helm-airgap verify --json"
  cd "$REPO"
  cargo build -p airgap-cli
  local bin
  bin="$(target_dir)/debug/helm-airgap"
  vectors all >"$OUT/vectors.txt"
  python3 - "$bin" "$PACKS" "$TRUST_ROOT" "$OUT" >"$OUT/cli.results" <<'EOF'
import json, os, subprocess, sys
bin_, packs, trust_root, out = sys.argv[1:]
default = sorted(a["key"].removeprefix("ed25519:") for a in json.load(open(trust_root))["anchors"])
for line in open(os.path.join(out, "vectors.txt")):
    id_, file, anchors, expect = line.split()
    anchors = sorted(anchors.split(","))
    root = trust_root
    if anchors != default:
        root = os.path.join(out, id_.replace("/", "_") + ".trust.json")
        json.dump({"format": "helm-trust-root/1",
                   "anchors": [{"name": f"anchor-{i}", "key": "ed25519:" + k} for i, k in enumerate(anchors)]},
                  open(root, "w"))
    p = subprocess.run([bin_, "verify", os.path.join(packs, file), "--trust-root", root, "--json"],
                       capture_output=True, text=True)
    try:
        r = json.loads(p.stdout)
        if r["verified"]:
            v = f"verified:{r['records']}"
        else:
            i = r["error"]["record_index"]
            v = f"{r['error']['code']}@{'-' if i is None else i}"
    except (ValueError, KeyError):
        v = f"CLI_EXIT_{p.returncode}@-"
        print(p.stderr, file=sys.stderr)
    print("RESULT", id_, v)
EOF
  echo "$(wc -l <"$OUT/cli.results") vectors verified by helm-airgap"
}

# ---------------------------------------------------------------------------------------

if [ "${1:-}" = "--stage" ]; then
  case "${2:-}" in firmware | capi | web | cli) ;; *) echo "usage: $0 [--stage firmware|capi|web|cli]" >&2; exit 2 ;; esac
  if [ -z "${OUT:-}" ]; then # run by hand: results go to a temporary folder
    OUT="$(mktemp -d)"
    export OUT
    trap 'rm -rf "$OUT"' EXIT
  fi
  "stage_$2"
  exit $?
fi

START=$(date +%s)
OUT="$(mktemp -d)"
export OUT
trap 'rm -rf "$OUT"' EXIT

step "tools"
missing=0
for t in cargo rustup python3 node npm cc; do
  command -v "$t" >/dev/null || { loud "FAILED: '$t' is not installed; it is needed here"; missing=1; }
done
[ "$missing" = 0 ] || exit 1
rustup target add thumbv7em-none-eabihf wasm32-unknown-unknown >/dev/null 2>&1 ||
  { loud "FAILED: rustup could not add thumbv7em-none-eabihf and wasm32-unknown-unknown"; exit 1; }
rustup component add llvm-tools >/dev/null 2>&1 || echo "note: llvm-tools not installed by rustup; using llvm-size from PATH"
if ! apt_install qemu-system-arm qemu-system-arm; then
  loud "FAILED: qemu-system-arm is missing and 'apt-get install qemu-system-arm' did not work:" \
    "the Cortex-M firmware cannot be run. Failing rather than skipping."
  exit 1
fi
if ! apt_install chromium chromium; then
  loud "FAILED: chromium is missing and 'apt-get install chromium' did not work:" \
    "the browser page cannot be tested. Failing rather than skipping."
  exit 1
fi
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
  echo "installing cbindgen $CBINDGEN_VERSION (crates.io)"
  cargo install --quiet --locked cbindgen --version "$CBINDGEN_VERSION" ||
    { loud "FAILED: cargo install cbindgen $CBINDGEN_VERSION did not work"; exit 1; }
fi
if [ -z "$(llvm_tool llvm-size)" ]; then
  loud "FAILED: no llvm-size (rustup component llvm-tools, or LLVM on PATH) to measure the firmware"
  exit 1
fi
echo "qemu: $(qemu-system-arm --version | head -1)"
echo "chromium: $(chromium --version 2>/dev/null | head -1)"
echo "cbindgen: $(cbindgen --version); cc: $(cc --version | head -1); node: $(node --version)"

declare -A STATUS
for s in firmware capi web cli; do
  t0=$(date +%s)
  if "$SELF" --stage "$s"; then STATUS[$s]=ok; else STATUS[$s]=FAILED; fi
  echo "(stage $s: ${STATUS[$s]} in $(($(date +%s) - t0)) s)"
done

step "one table: expected, helm-airgap (reference), C ABI, browser, Cortex-M4 firmware"
set +e
vectors all >"$OUT/vectors.txt"
python3 - "$OUT" <<'EOF'
import os, sys
out = sys.argv[1]
def load(name):
    r = {}
    p = os.path.join(out, name + ".results")
    if os.path.exists(p):
        for line in open(p):
            f = line.split()
            if len(f) == 3 and f[0] == "RESULT":
                r[f[1]] = f[2]
    return r
cols = [("helm-airgap", load("cli")), ("C ABI", load("capi")), ("browser", load("web")), ("firmware", load("firmware"))]
rows, bad = [], 0
for line in open(os.path.join(out, "vectors.txt")):
    id_, file, _, expect = line.split()
    ref = cols[0][1].get(id_)
    def matches(v):
        if expect.startswith("accept:"):
            return v == "verified:" + expect.split(":")[1]
        return v is not None and v.split("@")[0] == expect
    cells, ok = [], True
    for name, res in cols:
        v = res.get(id_)
        if v is None:
            # The firmware embeds two packs; the C test runs plain .tar; anything else must run.
            expected_here = {"helm-airgap": True, "browser": True,
                             "C ABI": file.endswith(".tar"),
                             "firmware": id_ in ("valid/small-run", "invalid/record-byte-flipped")}[name]
            if expected_here:
                ok = False
                cells.append("MISSING")
            else:
                cells.append("·")
            continue
        if not matches(v) or v != ref:
            ok = False
        cells.append(v)
    bad += not ok
    rows.append([id_, expect] + cells + ["ok" if ok else "MISMATCH"])
head = ["vector", "expected"] + [c[0] for c in cols] + [""]
w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
fmt = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip()
print(fmt(head))
print(fmt(["-" * x for x in w[:-1]] + [""]))
for r in rows:
    print(fmt(r))
print(f"\n{len(rows)} vectors; verdicts are verified:RECORDS or CODE@RECORD_INDEX ('-': no record); "
      f"'·' = not run by that target; {bad} mismatches")
sys.exit(1 if bad else 0)
EOF
table_rc=$?
set -e

if [ -f "$OUT/firmware.sizes" ]; then
  step "Cortex-M4 firmware size (valid binary, opt-level s, LTO)"
  cat "$OUT/firmware.sizes"
fi

step "summary"
failed=0
for s in firmware capi web cli; do
  echo "$s: ${STATUS[$s]}"
  [ "${STATUS[$s]}" = ok ] || failed=1
done
echo "table: $([ $table_rc = 0 ] && echo ok || echo MISMATCH)"
echo "total time: $(($(date +%s) - START)) s"
if [ $failed != 0 ] || [ $table_rc != 0 ]; then
  loud "FAILED: embedded tests (see the stages and the table above)"
  exit 1
fi
echo "embedded: all targets agree with helm-airgap and the vectors"
