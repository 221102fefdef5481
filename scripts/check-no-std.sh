#!/usr/bin/env bash
# Proves kiln-runtime builds for bare-metal Cortex-M with only `core`: thumbv7em-none-eabihf (M4F)
# and thumbv6m-none-eabi (M0+). Installs the targets with rustup; where rustup cannot download,
# falls back to building `core` from source (-Zbuild-std) as ../shared/cross/README.md describes.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(thumbv7em-none-eabihf thumbv6m-none-eabi)
have_all=1
for t in "${targets[@]}"; do
  rustup target list --installed 2>/dev/null | grep -qx "$t" || have_all=0
done
if [ "$have_all" = 0 ]; then
  timeout 180 rustup target add "${targets[@]}" >/dev/null 2>&1 || have_all=fallback
fi
for t in "${targets[@]}"; do
  if [ "$have_all" = fallback ]; then
    timeout 180 rustup component add rust-src >/dev/null 2>&1 || true
    RUSTC_BOOTSTRAP=1 cargo build -q --release -p kiln-runtime --features storage --target "$t" -Zbuild-std=core
  else
    cargo build -q --release -p kiln-runtime --features storage --target "$t"
  fi
  echo "no_std: kiln-runtime (with the trainer and its flash store) builds for $t"
done
