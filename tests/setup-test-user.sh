#!/usr/bin/env bash
# The runtime suite runs as an unprivileged user. As root, make sure that user exists and has a
# subordinate id range (R7: runs with a full uid range via newuidmap); as a normal user, the tests
# simply run as yourself. A second user without a range (o2btest-norange) checks the single-uid
# fallback.
set -euo pipefail
user=${OCI2BIN_TEST_USER:-o2btest}
norange=${OCI2BIN_TEST_USER_NORANGE:-o2btest-norange}
[ "$(id -u)" = 0 ] || exit 0
for u in "$user" "$norange"; do
  if ! id "$u" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh "$u"
    echo "created test user $u"
  fi
done
# useradd may give new users a range (SUB_UID_COUNT in login.defs): the range-less user has none.
for f in /etc/subuid /etc/subgid; do
  [ -f "$f" ] && grep -q "^$norange:" "$f" && sed -i "/^$norange:/d" "$f"
done
# The tests' user gets 100000-165535 unless it has a range already (useradd may have given one).
if ! grep -q "^$user:" /etc/subuid 2>/dev/null; then
  usermod --add-subuids 100000-165535 "$user"
fi
if ! grep -q "^$user:" /etc/subgid 2>/dev/null; then
  usermod --add-subgids 100000-165535 "$user"
fi
# slirp4netns and pasta open /dev/net/tun as the user. Debian's udev makes it 0666; a machine
# without udev (this VM's devtmpfs) leaves it 0600, root only.
if [ -c /dev/net/tun ]; then
  chmod 0666 /dev/net/tun
fi
