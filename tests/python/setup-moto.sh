#!/usr/bin/env bash
# Creates .venv-moto (gitignored) with moto's standalone server, the local peer the AWS tests use for
# DescribeReservedInstancesOfferings and Cost Explorer GetCostAndUsage.
#
# Usage: bash tests/python/setup-moto.sh            (from the repository root; idempotent)
# Then:  export COMMITD_TEST_MOTO="$PWD/.venv-moto/bin/moto_server"
# The tests in tests/aws/moto.rs start that binary on a free 127.0.0.1 port and fail (not skip) when
# COMMITD_TEST_MOTO is set but the binary is missing, or when CI=true and it is not set.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=.venv-moto
# Pinned so the injected-results API and the EC2 offerings it fakes do not shift under the tests.
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"

if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "moto $MOTO_VERSION already in $VENV"
else
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  echo "installed moto $MOTO_VERSION in $VENV"
fi
echo "COMMITD_TEST_MOTO=$PWD/$VENV/bin/moto_server"
