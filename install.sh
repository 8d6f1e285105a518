#!/bin/sh
# Install the cachegate release binary for this machine: download it and its .sha256, refuse
# on a checksum mismatch, install into a bin dir and print the installed version.
#   curl -fsSL https://gitlab.com/cachegate/cachegate/-/releases/permalink/latest/downloads/install.sh | sh
# Settings: CACHEGATE_VERSION (default latest), CACHEGATE_DOWNLOAD_URL (the folder holding the
# release files; http(s):// or file://), CACHEGATE_INSTALL_DIR (default /usr/local/bin when
# writable, else ~/.local/bin).
set -eu

project_url=https://gitlab.com/cachegate/cachegate

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

version=${CACHEGATE_VERSION:-latest}
case "$version" in
  latest) release=permalink/latest ;;
  v*) release=$version ;;
  *) release=v$version ;;
esac
base_url=${CACHEGATE_DOWNLOAD_URL:-$project_url/-/releases/$release/downloads}
base_url=${base_url%/}

os=$(uname -s)
case "$os" in
  Linux) os=linux ;;
  *) die "no release binary for $os (Linux only); build from source: cargo install --locked --git $project_url" ;;
esac
arch=$(uname -m)
case "$arch" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *) die "no release binary for CPU $arch (x86_64 or aarch64); build from source: cargo install --locked --git $project_url" ;;
esac
asset=cachegate-$os-$arch

if command -v curl >/dev/null 2>&1; then
  downloader=curl
elif command -v wget >/dev/null 2>&1; then
  downloader=wget
else
  downloader=
fi

# fetch URL FILE
fetch() {
  case "$downloader:$1" in
    curl:*) curl -fsSL --retry 3 -o "$2" "$1" ;;
    # wget has no file:// support: read the file directly.
    *:file://*) cp "${1#file://}" "$2" ;;
    wget:*) wget -q -O "$2" "$1" ;;
    *) die "neither curl nor wget is installed; install one of them (e.g. apk add curl, apt-get install -y curl)" ;;
  esac || die "could not download $1"
}

if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d ' ' -f 1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d ' ' -f 1; }
else
  die "neither sha256sum nor shasum is installed: cannot verify the download"
fi

if [ -n "${CACHEGATE_INSTALL_DIR:-}" ]; then
  install_dir=$CACHEGATE_INSTALL_DIR
elif [ -d /usr/local/bin ] && [ -w /usr/local/bin ]; then
  install_dir=/usr/local/bin
else
  [ -n "${HOME:-}" ] || die "HOME is not set; set CACHEGATE_INSTALL_DIR"
  install_dir=$HOME/.local/bin
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cachegate-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

say "downloading $base_url/$asset"
fetch "$base_url/$asset" "$tmp/$asset"
fetch "$base_url/$asset.sha256" "$tmp/$asset.sha256"

expected=$(cut -d ' ' -f 1 "$tmp/$asset.sha256")
actual=$(sha256 "$tmp/$asset")
case "$expected" in
  *[!0-9a-f]* | "") die "$asset.sha256 holds no sha256 digest (got '$expected')" ;;
esac
[ "$expected" = "$actual" ] || die "checksum mismatch for $asset: expected $expected, got $actual; nothing installed"

mkdir -p "$install_dir" || die "cannot create $install_dir; set CACHEGATE_INSTALL_DIR to a writable directory"
# Copy next to the target, then rename: a running or concurrent job never sees half a binary.
cp "$tmp/$asset" "$install_dir/.cachegate.tmp.$$" || die "cannot write to $install_dir; set CACHEGATE_INSTALL_DIR to a writable directory"
chmod 755 "$install_dir/.cachegate.tmp.$$"
mv -f "$install_dir/.cachegate.tmp.$$" "$install_dir/cachegate"

installed=$("$install_dir/cachegate" --version) || die "$install_dir/cachegate does not run on this machine"
say "installed $installed to $install_dir/cachegate"
case ":${PATH:-}:" in
  *":$install_dir:"*) ;;
  *) say "$install_dir is not on PATH; add it: export PATH=\"$install_dir:\$PATH\"" ;;
esac
