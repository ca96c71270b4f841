#!/usr/bin/env bash
# Installs the system pieces marketpipe's embedded stack needs, idempotently:
#   PostgreSQL (the distribution's major version) with contrib, its server headers, cmake,
#   TimescaleDB for that major version, and Debian's chromium (the headless browser of the UI test).
# TimescaleDB comes from the distribution's binary package when it has one for the local
# PostgreSQL major; otherwise it is built from Debian's source package (trixie) against the local
# server headers. The mirror is derived from the machine's own apt sources: no host is written here.
# A second run finds everything in place and exits in well under a second.
set -euo pipefail

log() { printf '[install-system] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

CACHE_DIR="${MARKETPIPE_BUILD_CACHE:-/var/cache/marketpipe}"
TS_SOURCE_SUITE="${MARKETPIPE_TIMESCALEDB_SUITE:-trixie}"

pg_major() {
  local cfg
  cfg=$(ls -d /usr/lib/postgresql/*/bin/pg_config 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$cfg" ]; then "$cfg" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/'; return; fi
  apt-cache show postgresql 2>/dev/null | sed -n -E 's/^Depends: postgresql-([0-9]+).*/\1/p' | head -n1
}

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do have_pkg "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then
    log "apt-get update"; $SUDO apt-get update -qq; apt_updated=1
  fi
  log "installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# 1. PostgreSQL server + contrib (pg_trgm for Prefect) + headers + cmake for the TimescaleDB build.
if ! have_pkg postgresql && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt_install postgresql postgresql-contrib
fi
PG_MAJOR=$(pg_major)
[ -n "$PG_MAJOR" ] || { log "cannot determine the PostgreSQL major version"; exit 1; }
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
apt_install "postgresql-${PG_MAJOR}" "postgresql-contrib" 2>/dev/null || apt_install "postgresql-${PG_MAJOR}"

# 2. Chromium, headless, for the test that renders the Prefect UI of the test stack.
apt_install chromium

EXT_DIR=$("$PG_CONFIG" --sharedir)/extension
LIB_DIR=$("$PG_CONFIG" --pkglibdir)
if ls "$EXT_DIR"/timescaledb.control >/dev/null 2>&1 && ls "$LIB_DIR"/timescaledb*.so >/dev/null 2>&1; then
  log "TimescaleDB already installed for PostgreSQL ${PG_MAJOR} ($(sed -n -E "s/^default_version = '(.*)'/\1/p" "$EXT_DIR/timescaledb.control"))"
  exit 0
fi

# 3a. The distribution's binary package, where it exists for this major version.
if apt-cache show "postgresql-${PG_MAJOR}-timescaledb" >/dev/null 2>&1 \
   || { [ $apt_updated -eq 0 ] && $SUDO apt-get update -qq && apt_updated=1 && apt-cache show "postgresql-${PG_MAJOR}-timescaledb" >/dev/null 2>&1; }; then
  apt_install "postgresql-${PG_MAJOR}-timescaledb"
  log "TimescaleDB installed from the distribution's binary package"
  exit 0
fi

# 3b. Build from Debian's source package against the local server headers.
apt_install "postgresql-server-dev-${PG_MAJOR}" cmake gcc make dpkg-dev libssl-dev
log "building TimescaleDB from Debian's ${TS_SOURCE_SUITE} source package for PostgreSQL ${PG_MAJOR}"
mkdir -p "$CACHE_DIR/apt/lists/partial" "$CACHE_DIR/apt/archives/partial" "$CACHE_DIR/src"
SRC_LIST="$CACHE_DIR/apt/sources.list"
# Derive the Debian mirror URI from the machine's own apt configuration.
MIRROR=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  MIRROR=$(awk '/^URIs:/{u=$2} /^Suites:/{ if ($0 ~ /bookworm|trixie|bullseye|sid|stable/ && $0 !~ /security/) {print u; exit} }' "$f")
  [ -n "$MIRROR" ] && break
done
if [ -z "$MIRROR" ] && [ -f /etc/apt/sources.list ]; then
  MIRROR=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$MIRROR" ] || { log "cannot derive a Debian mirror from /etc/apt/sources*"; exit 1; }
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${MIRROR} ${TS_SOURCE_SUITE} main" > "$SRC_LIST"
APT_OPTS=(-o "Dir::Etc::SourceList=$SRC_LIST" -o "Dir::Etc::SourceParts=-" \
          -o "Dir::State::Lists=$CACHE_DIR/apt/lists" -o "Dir::Cache::Archives=$CACHE_DIR/apt/archives" \
          -o "APT::Get::List-Cleanup=0")
cd "$CACHE_DIR/src"
if ! ls -d timescaledb-*/ >/dev/null 2>&1; then
  $SUDO apt-get "${APT_OPTS[@]}" update -qq
  $SUDO apt-get "${APT_OPTS[@]}" source --download-only timescaledb >/dev/null
  dpkg-source -x --no-check "$(ls timescaledb_*.dsc | head -n1)" >/dev/null
fi
SRC=$(ls -d timescaledb-*/ | head -n1)
cd "$SRC"
rm -rf build
./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
  -DSEND_TELEMETRY_DEFAULT=NO -DPG_CONFIG="$PG_CONFIG" >"$CACHE_DIR/timescaledb-bootstrap.log" 2>&1
cd build
make -j"$(nproc)" >"$CACHE_DIR/timescaledb-build.log" 2>&1
$SUDO make install >>"$CACHE_DIR/timescaledb-build.log" 2>&1
log "TimescaleDB built and installed into $LIB_DIR (logs in $CACHE_DIR)"
