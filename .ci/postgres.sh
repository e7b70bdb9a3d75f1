# Sourced by .ci/run (and by tests/deploy/files.rs): decides whether the PostgreSQL tests run.
#
# The server is COMMITD_TEST_DATABASE_URL when set, else the local one on 127.0.0.1:5432 (started
# first if this machine has a stopped cluster). When it answers, COMMITD_TEST_DATABASE_URL is
# exported and the tests create and drop their own databases through it.
#
# Under CI (CI=true, as CI services set it) PostgreSQL must answer: a run that silently skipped
# the PostgreSQL tests (the two-replica lease test among them) would pass without testing what
# production runs on. So CI fails here with a clear message, and exports
# COMMITD_TEST_REQUIRE_POSTGRES=1, which makes every test helper that would otherwise fall back to
# SQLite fail instead (tests/common/pg.rs, providers::sim's tests).
# Outside CI, no PostgreSQL means SQLite only, said out loud.

ci_postgres_url="${COMMITD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
case "${CI:-}" in
  true | 1 | yes) ci_postgres_required=1 ;;
  *) ci_postgres_required=0 ;;
esac

ci_postgres_answers() {
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -d "$ci_postgres_url" 2>/dev/null
}

if ! ci_postgres_answers && [ -z "${COMMITD_TEST_DATABASE_URL:-}" ]; then
  # The machine's cluster may simply be stopped; start it if this machine has one.
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    sleep 2
  fi
fi

if ci_postgres_answers; then
  export COMMITD_TEST_DATABASE_URL="$ci_postgres_url"
  echo "using PostgreSQL at $COMMITD_TEST_DATABASE_URL"
elif [ "$ci_postgres_required" = 1 ]; then
  if ! command -v pg_isready >/dev/null 2>&1; then
    echo "error: CI=true and pg_isready is not installed (postgresql-client): cannot check PostgreSQL" >&2
  fi
  echo "error: CI=true but PostgreSQL does not answer at $ci_postgres_url:" \
    "the PostgreSQL tests (two-replica lease included) must run in CI." \
    "Start a server there, or point COMMITD_TEST_DATABASE_URL at one." >&2
  exit 1
else
  unset COMMITD_TEST_DATABASE_URL
  echo "no PostgreSQL at $ci_postgres_url: the store tests run against SQLite only (outside CI)"
fi

if [ "$ci_postgres_required" = 1 ]; then
  export COMMITD_TEST_REQUIRE_POSTGRES=1
  echo "COMMITD_TEST_REQUIRE_POSTGRES=1: a PostgreSQL test that cannot reach the server fails"
fi
