#!/bin/sh
# Install the Debian packages the build, the tests and the demo need, if any
# is missing. Idempotent; does nothing when all are present.
# Usage: scripts/deps.sh [--check]   (--check: only report, exit 1 if missing)
PKGS="build-essential pkg-config libjansson-dev libyaml-dev libpng-dev
libjpeg62-turbo-dev libdeflate-dev libopenblas-dev liblapacke-dev libpcre2-dev libutf8proc-dev
zlib1g-dev clang libclang-rt-14-dev jq"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$1" = "--check" ]; then
	echo "missing Debian packages:$missing" >&2
	exit 1
fi
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq &&
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
