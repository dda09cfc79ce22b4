#!/usr/bin/env bash
# Refreshes the vendored browser libraries from the npm registry (run from anywhere; needs npm):
#   console/vendor/refresh.sh
# Versions are pinned here and listed in README; bump them here, run this, and read the diff.
# Only hooks.module.js is changed after download: its bare import of "preact" becomes the vendored file, so the
# browser loads plain ES modules with no import map (an inline import map would need an inline script, which
# the console's Content-Security-Policy refuses).
set -euo pipefail
PREACT=10.29.8
HTM=3.1.1
UPLOT=1.6.32
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "preact@$PREACT" "htm@$HTM" "uplot@$UPLOT" >/dev/null
for f in *.tgz; do mkdir -p "${f%.tgz}"; tar xzf "$f" -C "${f%.tgz}"; done
cp "preact-$PREACT/package/dist/preact.module.js" "$here/preact.module.js"
sed 's/from"preact"/from"\.\/preact.module.js"/' "preact-$PREACT/package/hooks/dist/hooks.module.js" > "$here/hooks.module.js"
cp "htm-$HTM/package/dist/htm.module.js" "$here/htm.module.js"
cp "uplot-$UPLOT/package/dist/uPlot.esm.js" "$here/uPlot.esm.js"
cp "uplot-$UPLOT/package/dist/uPlot.min.css" "$here/uPlot.min.css"
cp "preact-$PREACT/package/LICENSE" "$here/LICENSE.preact"
cp "htm-$HTM/package/LICENSE" "$here/LICENSE.htm"
cp "uplot-$UPLOT/package/LICENSE" "$here/LICENSE.uplot"
grep -q 'from"./preact.module.js"' "$here/hooks.module.js" || { echo "hooks.module.js: the import rewrite did not apply" >&2; exit 1; }
echo "vendored preact $PREACT, htm $HTM, uPlot $UPLOT into $here"
