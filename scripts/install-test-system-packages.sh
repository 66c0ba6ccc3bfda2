#!/usr/bin/env bash
# The system packages the viewer tests need on Debian/Ubuntu: Xvfb (a virtual display that pytest-xvfb
# starts) and the libraries Qt loads for it. Without them, the viewer tests skip with the reason
# (outside CI) instead of aborting the test run. Other systems: install Xvfb and Qt's xcb dependencies
# with your package manager, or run the tests on a desktop.
set -euo pipefail

if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get not found: install Xvfb and Qt's xcb libraries with your system's package manager." >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  xvfb xauth libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0 \
  libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
  libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1 libxrender1 libxi6 >/dev/null
