#!/usr/bin/env bash
# Installs what cross-compiling kiln firmware needs: Debian's ARM/aarch64 toolchains and QEMU,
# flip-link,
# and the Rust targets thumbv7em-none-eabihf, thumbv8m.main-none-eabihf (Cortex-M33), thumbv6m-none-eabi and aarch64-unknown-linux-gnu.
# Where rustup cannot download a target, prints "mode=build-std": builds then compile `core`
# from source (rust-src) with -Zbuild-std, as ../shared/cross/README.md describes.
set -euo pipefail
pkgs=(gcc-arm-none-eabi binutils-arm-none-eabi qemu-system-arm qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "cross: installing ${missing[*]}" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
targets=(thumbv7em-none-eabihf thumbv8m.main-none-eabihf thumbv6m-none-eabi aarch64-unknown-linux-gnu)
have=1
for t in "${targets[@]}"; do rustup target list --installed 2>/dev/null | grep -qx "$t" || have=0; done
# flip-link: the firmware's linker wrapper that puts the stack below the statics, so a stack
# overflow faults instead of corrupting them.
if ! command -v flip-link >/dev/null 2>&1; then
  echo "cross: installing flip-link" >&2
  cargo install -q --locked flip-link >&2
fi
if [ "$have" = 1 ] || timeout 180 rustup target add "${targets[@]}" >/dev/null 2>&1; then
  echo "mode=targets"
else
  timeout 180 rustup component add rust-src >/dev/null 2>&1 || true
  echo "mode=build-std"
fi
