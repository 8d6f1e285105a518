#!/usr/bin/env bash
# Build the fully static release binary and write dist/: cachegate-linux-<arch>, its .sha256
# (sha256sum format), the man pages in man/ (cachegate.1 and one per command), install.sh and
# the CI/CD component, ready to attach to a GitLab release.
# Usage: scripts/release.sh [DIST_DIR]   (default: dist)
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${1:-dist}

# Static with glibc: only the *-linux-gnu targets can be installed here (no musl target can be
# downloaded), and glibc links statically with +crt-static. TLS is rustls on ring, so there is no
# OpenSSL to link. Name resolution still works in an empty chroot: glibc >= 2.34 has the
# `files` and `dns` NSS modules built into libc itself, so /etc/hosts and /etc/resolv.conf are
# read without loading any shared library (tests/cli/dist.rs proves it).
# RUSTFLAGS with an explicit --target applies only to the target, not to build scripts.
# relocation-model=static makes a classic static executable (ldd: "not a dynamic executable")
# rather than static-pie, which some loaders and scanners still report as dynamic.
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static"

# Where cargo puts the build: CARGO_TARGET_DIR or build.target-dir when set, else target/.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[[ -n $target_dir ]] || {
  echo "release.sh: cargo metadata did not name a target directory" >&2
  exit 1
}

declare -A arch_of=([x86_64-unknown-linux-gnu]=x86_64 [aarch64-unknown-linux-gnu]=aarch64)
installed_targets=$(rustup target list --installed 2>/dev/null || rustc -vV | sed -n 's/^host: //p')

rm -rf "$dist"
mkdir -p "$dist"
built=0
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
  arch=${arch_of[$target]}
  if ! grep -qx "$target" <<<"$installed_targets"; then
    # aarch64 needs its rust-std and a cross linker (gcc-aarch64-linux-gnu), neither of which
    # this build machine can download; a machine that has both builds it with this same script.
    echo "release.sh: skipping $arch: target $target is not installed (rustup target add $target)" >&2
    continue
  fi
  if [[ $target == aarch64-* && $(uname -m) != aarch64 ]]; then
    if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
      echo "release.sh: skipping $arch: no cross linker aarch64-linux-gnu-gcc" >&2
      continue
    fi
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  fi
  cargo build --release --locked --target "$target"
  bin="$target_dir/$target/release/cachegate"

  # Refuse to ship anything that loads a shared library at run time.
  ldd_out=$(ldd "$bin" 2>&1 || true)
  if ! grep -Eq 'statically linked|not a dynamic executable' <<<"$ldd_out"; then
    echo "release.sh: $bin is not static; ldd says:" >&2
    echo "$ldd_out" >&2
    exit 1
  fi
  if file "$bin" | grep -q 'dynamically linked'; then
    echo "release.sh: $bin is dynamically linked: $(file "$bin")" >&2
    exit 1
  fi

  asset=cachegate-linux-$arch
  cp "$bin" "$dist/$asset"
  (cd "$dist" && sha256sum "$asset" >"$asset.sha256")
  echo "release.sh: $dist/$asset: $(stat -c %s "$dist/$asset") bytes; ldd: $(echo "$ldd_out" | xargs)" >&2
  built=$((built + 1))
  # The man pages come from the clap definitions, so any binary this machine runs can write them.
  if [[ ! -e $dist/man && $arch == $(uname -m) ]]; then
    "$dist/$asset" man --out-dir "$dist/man"
  fi
done
((built > 0)) || {
  echo "release.sh: no target could be built" >&2
  exit 1
}
[[ -s $dist/man/cachegate.1 ]] || {
  echo "release.sh: no binary built for $(uname -m), so no man page was written" >&2
  exit 1
}

cp install.sh "$dist/install.sh"
chmod 755 "$dist/install.sh"
cp templates/cachegate.yml "$dist/cachegate.yml"
echo "release.sh: wrote $dist/: $(cd "$dist" && echo *)" >&2
