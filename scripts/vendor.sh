#!/usr/bin/env bash
# Fetch the watch page's browser dependency (hls.js 1.x) from the npm registry into
# gateway/static/vendor/ (git-ignored). Idempotent: does nothing when the file is there.
# Never fails the build: without npm or a network the page says hls.js is missing, and
# KUSH_HLSJS_URL can point the page at another copy.
set -uo pipefail
cd "$(dirname "$0")/.."

VENDOR_DIR="gateway/static/vendor"
TARGET="$VENDOR_DIR/hls.min.js"
WORKER="$VENDOR_DIR/hls.worker.js"   # lets the page run hls.js's worker without blob: URLs
SPEC="${HLSJS_SPEC:-hls.js@1}"

if [ -s "$TARGET" ] && [ -s "$WORKER" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "vendor.sh: npm not found; $TARGET not fetched (the watch page will say hls.js is missing)" >&2
  exit 0
fi

mkdir -p "$VENDOR_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if ! npm install --no-audit --no-fund --no-save --silent --prefix "$WORK" "$SPEC" >"$WORK/npm.log" 2>&1; then
  echo "vendor.sh: 'npm install $SPEC' failed (offline?); $TARGET not fetched:" >&2
  tail -n 5 "$WORK/npm.log" >&2
  exit 0
fi

DIST="$WORK/node_modules/hls.js/dist"
if [ ! -s "$DIST/hls.min.js" ] || [ ! -s "$DIST/hls.worker.js" ]; then
  echo "vendor.sh: hls.min.js or hls.worker.js not found in the installed package" >&2
  exit 0
fi
VERSION="$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$WORK/node_modules/hls.js/package.json" | head -n 1)"
cp "$DIST/hls.worker.js" "$WORKER.tmp" && mv "$WORKER.tmp" "$WORKER"
cp "$DIST/hls.min.js" "$TARGET.tmp" && mv "$TARGET.tmp" "$TARGET"
cp "$WORK/node_modules/hls.js/LICENSE" "$VENDOR_DIR/hls.js.LICENSE" 2>/dev/null || true
echo "$VERSION" >"$VENDOR_DIR/hls.js.version"
echo "vendor.sh: hls.js $VERSION -> $VENDOR_DIR/"
