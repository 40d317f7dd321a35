#!/usr/bin/env bash
# The runtime suite runs as an unprivileged user. As root, make sure that user exists; as a normal
# user, the tests simply run as yourself.
set -euo pipefail
user=${OCI2BIN_TEST_USER:-o2btest}
if [ "$(id -u)" = 0 ] && ! id "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh "$user"
  echo "created test user $user"
fi
