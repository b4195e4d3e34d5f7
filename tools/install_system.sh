#!/usr/bin/env bash
# Installs the Debian packages VoxTok needs (voices for the synthetic corpus, classical codecs,
# audio tools, and chromium for the demo's browser test). Idempotent: returns at once when
# everything is already there.
set -euo pipefail

need_cmds=(espeak-ng mbrola sox c2enc opusenc ffmpeg chromium chromedriver)
need_voices=(us1 us2 us3 en1)

missing=0
for c in "${need_cmds[@]}"; do command -v "$c" >/dev/null 2>&1 || missing=1; done
for v in "${need_voices[@]}"; do [ -e "/usr/share/mbrola/$v/$v" ] || [ -e "/usr/share/mbrola/$v" ] || missing=1; done
[ "$missing" = 0 ] && exit 0

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# mbrola and its voices live in contrib/non-free: enable those components on the machine's
# existing apt sources rather than adding a mirror of our own.
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  $SUDO sed -i -E '/^Components:/{/contrib/!s/$/ contrib/; /non-free( |$)/!s/$/ non-free/}' "$f"
done
if [ -f /etc/apt/sources.list ]; then
  $SUDO sed -i -E '/^deb /{/contrib/!s/$/ contrib/; / non-free( |$)/!s/$/ non-free/}' /etc/apt/sources.list
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 \
  sox libsox-fmt-all codec2 opus-tools ffmpeg chromium chromium-driver >/dev/null
echo "system packages installed"
