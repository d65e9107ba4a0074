#!/usr/bin/env bash
# CI of the JavaScript SDK, called by .ci/run after `cargo test` (which
# leaves the server binary in target/debug): the npm packages from the
# lockfile, Debian's chromium when missing, the strict type check, the build,
# the Node tests against the real binary, the browser test, the bundle size
# and `npm pack`. Run from anywhere: `bash sdk/js/ci.sh`.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS=0
step() { echo "== [sdk/js ${SECONDS}s] $*"; }

repo_root="$(cd ../.. && pwd)"
export VEVEE_BIN="${VEVEE_BIN:-${CARGO_TARGET_DIR:-$repo_root/target}/debug/vevee-attributes}"
if [ ! -x "$VEVEE_BIN" ]; then
  echo "no server binary at $VEVEE_BIN: run cargo build (or cargo test) in $repo_root first, or set VEVEE_BIN"
  exit 1
fi

step "npm ci (package-lock.json)"
npm ci --no-audit --no-fund --loglevel=error

if [ ! -x /usr/bin/chromium ]; then
  step "apt-get install chromium (Debian's; playwright's own download can't work here)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

step "tsc --strict --noEmit"
npx --no-install tsc --strict --noEmit -p tsconfig.json

step "build (tsc -> dist/)"
npm run --silent build

step "the declarations as a user's TypeScript sees them (test/types/usage.ts)"
npm run --silent typecheck:usage

step "node --test: the SDK against $VEVEE_BIN, and stub servers"
node --test test/node/

step "browser test: headless /usr/bin/chromium, page on another origin"
node --test test/browser/

step "bundle size (esbuild, minified + gzipped)"
npm run --silent size

step "npm pack"
npm pack --silent --pack-destination "${TMPDIR:-/tmp}" >/dev/null
tarball="${TMPDIR:-/tmp}/vevee-attributes-$(node -p 'require("./package.json").version').tgz"
tar -tzf "$tarball" | sort
tar -tzf "$tarball" | grep -qx 'package/dist/index.d.ts'
rm -f "$tarball"

step "done"
