#!/usr/bin/env bash
# Builds a recent nginx (1.26.3, Debian 13's version) for the interop tests that need
# features Debian 12's nginx 1.22.1 lacks ($proxy_protocol_tlv_*, nginx 1.23.2+). The source
# is Debian's own upstream tarball from deb.debian.org's pool, checked against its SHA-256
# (from trixie's Sources index), built with the modules those tests use and installed under OUT.
# Debian's packaged nginx stays the one every other test drives.
# Needs gcc, make, libssl-dev and libpcre2-dev (.ci/run installs them). Reuses an existing build in OUT.
# Usage: .ci/nginx/build.sh [OUT]   (default OUT: ${TMPDIR:-/tmp}/nginx-1.26). Prints the binary.
set -euo pipefail
version=1.26.3
sha256=69ee2b237744036e61d24b836668aad3040dda461fe6f570f1787eab570c75aa
url=http://deb.debian.org/debian/pool/main/n/nginx/nginx_${version}.orig.tar.gz
out=${1:-${TMPDIR:-/tmp}/nginx-1.26}
bin=$out/sbin/nginx
if [[ -x $bin ]] && "$bin" -v 2>&1 | grep -q "nginx/$version"; then
    echo "$bin"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsS --retry 3 -m 120 -o "$tmp/nginx.tar.gz" "$url" >&2
echo "$sha256  $tmp/nginx.tar.gz" | sha256sum -c --quiet - >&2
tar -xzf "$tmp/nginx.tar.gz" -C "$tmp"
cd "$tmp/nginx-$version"
# No zlib (gzip is off); PCRE2 for the rewrite module (`return`).
./configure --prefix="$out" --with-http_ssl_module --with-http_v2_module \
    --with-http_realip_module --with-stream --with-stream_ssl_module \
    --without-http_gzip_module >"$tmp/configure.log" 2>&1 ||
    { tail -30 "$tmp/configure.log" >&2; exit 1; }
make -j"$(nproc)" >"$tmp/make.log" 2>&1 || { tail -40 "$tmp/make.log" >&2; exit 1; }
make install >/dev/null
echo "$bin"
