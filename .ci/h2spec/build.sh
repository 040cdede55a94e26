#!/usr/bin/env bash
# Builds h2spec with the shared offline script (../shared/tools/h2spec/build.sh, GOPATH mode
# against Debian's golang-*-dev packages). The shared source tree has no cmd/h2spec (the
# upstream .gitignore's "h2spec" line dropped it), so when it is missing this runs the shared
# script on a copy of the tree with our main.go added as cmd/h2spec/main.go.
# Usage: .ci/h2spec/build.sh [OUT]   (default OUT: ${TMPDIR:-/tmp}/h2spec). Prints the path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SLUICE_H2SPEC_SRC:-$here/../../../shared/tools/h2spec}
[[ -f $shared/build.sh ]] || { echo "h2spec: no build script in $shared" >&2; exit 1; }
if [[ -d $shared/src/cmd/h2spec ]]; then
    exec bash "$shared/build.sh" "$@"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$shared/build.sh" "$tmp/build.sh"
cp -r "$shared/src" "$tmp/src"
chmod -R u+w "$tmp/src"
mkdir -p "$tmp/src/cmd/h2spec"
cp "$here/main.go" "$tmp/src/cmd/h2spec/main.go"
bash "$tmp/build.sh" "$@"
