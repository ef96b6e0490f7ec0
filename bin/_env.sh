# Shared set-up of bin/test and bin/demo (sourced, not run): each step is skipped when already done.
#   1. redis-server, prometheus/promtool, openssl, chromium and chromedriver on PATH (apt-get install as root; the
#      tests and the demo start their own private servers on free ports and never touch a
#      system redis on 6379);
#   2. a virtualenv in .venv;
#   3. the exact versions of requirements/test.lock (bin/lock refreshes it), then geoq itself
#      without resolving anything, redone only when the lock, setup.cfg or setup.py change
#      (a hash of them is kept in .venv/.geoq-install-stamp).
# The caller has cd'ed to the repo root and set GEOQ_TOOL to its own name, for messages.

say() { echo "${GEOQ_TOOL:-bin}: $*" >&2; }

VENV=.venv
STAMP="$VENV/.geoq-install-stamp"
LOCK=requirements/test.lock
APT_UPDATED=0

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root (or sudo) to run: $*"
        exit 1
    fi
}

apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no apt-get here; install $* yourself"
        exit 1
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@"
}

ensure_redis_server() {
    if command -v redis-server >/dev/null 2>&1; then
        return
    fi
    say "installing redis-server"
    apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || { say "redis-server still missing"; exit 1; }
}

ensure_browser() {
    # Debian's chromium and its chromedriver, for the dashboard's browser tests (tests/dashboard).
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        return
    fi
    say "installing chromium and chromium-driver"
    apt_install chromium chromium-driver
}

ensure_tools() {
    # promtool and prometheus for the metrics tests, openssl for the TLS certificates tests make.
    local missing=()
    command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

ensure_venv() {
    if [ -x "$VENV/bin/python" ]; then
        return
    fi
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        say "installing python3-venv"
        apt_install python3-venv
    fi
    say "creating $VENV"
    python3 -m venv "$VENV"
}

setup_hash() {
    cat "$LOCK" setup.cfg setup.py 2>/dev/null | sha256sum | cut -d' ' -f1
}

ensure_installed() {
    local want
    want="$(setup_hash)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        return
    fi
    say "installing $LOCK and geoq into $VENV"
    # The lock is the whole environment: --no-deps keeps pip from resolving anything newer.
    "$VENV/bin/python" -m pip install -q --no-deps -r "$LOCK"
    "$VENV/bin/python" -m pip install -q --no-deps -e .
    "$VENV/bin/python" -m pip check >&2 || { say "$LOCK does not satisfy setup.cfg: run bin/lock"; exit 1; }
    echo "$want" >"$STAMP"
}

geoq_setup() {
    ensure_redis_server
    ensure_tools
    ensure_browser
    ensure_venv
    ensure_installed
}
