#!/usr/bin/env bash
# Fetch the watch page's browser dependency, hls.js at the exact version and tarball
# hash pinned below, from the npm registry into gateway/static/vendor/ (git-ignored;
# shipped in the wheel, see pyproject.toml's package-data). Idempotent: does nothing when
# the pinned version is there, replaces any other version.
# Never fails the build: without npm or a network the page says hls.js is missing, and
# KUSH_HLSJS_URL can point the page at another copy.
#
# To move to another release: `npm view hls.js@X.Y.Z dist.integrity`, then change both
# lines below (or set HLSJS_VERSION and HLSJS_INTEGRITY for a one-off try).
set -uo pipefail
cd "$(dirname "$0")/.."

HLSJS_VERSION="${HLSJS_VERSION:-1.7.4}"
HLSJS_INTEGRITY="${HLSJS_INTEGRITY:-sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeoBTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/Tpm+tg==}"

VENDOR_DIR="gateway/static/vendor"
TARGET="$VENDOR_DIR/hls.min.js"
WORKER="$VENDOR_DIR/hls.worker.js"   # lets the page run hls.js's worker without blob: URLs
STAMP="$VENDOR_DIR/hls.js.version"

if [ -s "$TARGET" ] && [ -s "$WORKER" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$HLSJS_VERSION" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "vendor.sh: npm not found; $TARGET not fetched (the watch page will say hls.js is missing)" >&2
  exit 0
fi

mkdir -p "$VENDOR_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# `npm pack` downloads the release tarball without running any install script.
if ! (cd "$WORK" && npm pack --silent "hls.js@$HLSJS_VERSION" >"$WORK/npm.log" 2>&1); then
  echo "vendor.sh: 'npm pack hls.js@$HLSJS_VERSION' failed (offline?); $TARGET not fetched:" >&2
  tail -n 5 "$WORK/npm.log" >&2
  exit 0
fi
TARBALL="$WORK/hls.js-$HLSJS_VERSION.tgz"
ACTUAL="sha512-$(openssl dgst -sha512 -binary "$TARBALL" | base64 -w 0)"
if [ "$ACTUAL" != "$HLSJS_INTEGRITY" ]; then
  echo "vendor.sh: hls.js $HLSJS_VERSION tarball hash $ACTUAL is not the pinned $HLSJS_INTEGRITY; not installed" >&2
  exit 0
fi

tar -xzf "$TARBALL" -C "$WORK"
DIST="$WORK/package/dist"
if [ ! -s "$DIST/hls.min.js" ] || [ ! -s "$DIST/hls.worker.js" ]; then
  echo "vendor.sh: hls.min.js or hls.worker.js not found in the hls.js $HLSJS_VERSION package" >&2
  exit 0
fi
cp "$DIST/hls.worker.js" "$WORKER.tmp" && mv "$WORKER.tmp" "$WORKER"
cp "$DIST/hls.min.js" "$TARGET.tmp" && mv "$TARGET.tmp" "$TARGET"
cp "$WORK/package/LICENSE" "$VENDOR_DIR/hls.js.LICENSE" 2>/dev/null || true
echo "$HLSJS_VERSION" >"$STAMP"
echo "vendor.sh: hls.js $HLSJS_VERSION -> $VENDOR_DIR/"
