#!/usr/bin/env bash
# Fetch the browser assets the book serves itself (no CDN at reading time):
# MathJax 3, the ipywidgets HTML manager and require.js, at exact versions
# from the npm registry, checked against pinned sha512 digests, into
# book/_static/vendor/ (gitignored; recreated by `make book`). Also axe-core,
# the accessibility engine the browser test (tests/test_browser.py) injects
# into every page: it goes to vendor/.axe-core/, a dot folder, which Sphinx
# does not copy into the built book (only the test reads it).
#
# Usage: scripts/fetch_static.sh [DEST]     (DEST defaults to book/_static/vendor)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/book/_static/vendor}"

# name@version  sha512 (the registry's `dist.integrity` for that tarball)
PINS=(
  "mathjax@3.2.2 sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
  "@jupyter-widgets/html-manager@1.0.15 sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA=="
  "requirejs@2.3.8 sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw=="
  "axe-core@4.14.1 sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)

# Nothing to do when DEST already holds exactly these pins.
STAMP_CONTENT="$(printf '%s\n' "${PINS[@]}")"
if [[ -f "$DEST/PINS.txt" ]] && [[ "$(cat "$DEST/PINS.txt")" == "$STAMP_CONTENT" ]]; then
  echo "fetch_static: $DEST is up to date"
  exit 0
fi

command -v npm >/dev/null || { echo "fetch_static: npm is required (apt-get install npm)" >&2; exit 1; }
PY="$(command -v python3 || command -v python3.11)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/tgz" "$WORK/out"

for pin in "${PINS[@]}"; do
  spec="${pin%% *}"; want="${pin##* }"
  echo "fetch_static: npm pack $spec"
  file="$(cd "$WORK/tgz" && npm pack --silent --ignore-scripts "$spec" | tail -n 1)"
  got="sha512-$("$PY" -c 'import base64,hashlib,sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$WORK/tgz/$file")"
  if [[ "$got" != "$want" ]]; then
    echo "fetch_static: integrity mismatch for $spec: got $got, want $want" >&2
    exit 1
  fi
  name="${spec%@*}"; name="${name##*/}"          # mathjax, html-manager, requirejs, axe-core
  mkdir -p "$WORK/x/$name"
  tar -xzf "$WORK/tgz/$file" -C "$WORK/x/$name"
done

# MathJax: the combined TeX+MathML -> CommonHTML component, plus the folders it
# loads from at run time (extensions, fonts, menu, accessibility).
mkdir -p "$WORK/out/mathjax"
cp "$WORK/x/mathjax/package/LICENSE" "$WORK/x/mathjax/package/es5/tex-mml-chtml.js" "$WORK/out/mathjax/"
for d in a11y adaptors input output sre ui; do
  cp -R "$WORK/x/mathjax/package/es5/$d" "$WORK/out/mathjax/"
done

# ipywidgets HTML manager: the AMD embed bundle (loaded through require.js) and
# the font files its CSS points at.
mkdir -p "$WORK/out/html-manager"
cp "$WORK/x/html-manager/package/dist/embed-amd.js" "$WORK/x/html-manager/package/package.json" "$WORK/out/html-manager/"
cp "$WORK/x/html-manager/package/dist/"*.{woff2,woff,ttf,eot,svg} "$WORK/out/html-manager/"

# require.js
mkdir -p "$WORK/out/requirejs"
cp "$WORK/x/requirejs/package/require.js" "$WORK/x/requirejs/package/package.json" "$WORK/out/requirejs/"

# axe-core: the browser test's accessibility audit (not served by the book: see above).
mkdir -p "$WORK/out/.axe-core"
cp "$WORK/x/axe-core/package/axe.min.js" "$WORK/x/axe-core/package/LICENSE" "$WORK/x/axe-core/package/package.json" \
  "$WORK/out/.axe-core/"

printf '%s\n' "$STAMP_CONTENT" > "$WORK/out/PINS.txt"
rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$WORK/out" "$DEST"
echo "fetch_static: installed into $DEST"
du -sh "$DEST"
