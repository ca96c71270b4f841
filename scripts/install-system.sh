#!/usr/bin/env bash
# Installs the system pieces marketpipe's embedded stack needs, idempotently:
#   PostgreSQL (the distribution's major version) with contrib, its server headers, cmake,
#   TimescaleDB and pgvector for that major version, and Debian's chromium (the headless browser of
#   the UI test).
#
# TimescaleDB comes in two builds, installed side by side (each version is its own .so; the
# control file and the loader are the newest one's):
#   1. the Apache-only edition: the distribution's binary package where it has one for the local
#      PostgreSQL major, else Debian's source package (trixie, 2.19.3) built against the local server
#      headers. It is the fallback, and the version the in-place upgrade test starts from.
#   2. the full edition (with tsl/: native compression, continuous aggregates, the job scheduler),
#      TimescaleDB $MARKETPIPE_TIMESCALEDB_VERSION (2.28.3, the newest release that supports
#      PostgreSQL 15), built from the upstream source archive named by
#      $MARKETPIPE_TIMESCALEDB_ARCHIVE (default: ../shared/vendor/timescaledb-<version>.tar.gz beside
#      the project; checked against its .sha256 file when one lies beside it). Without that archive
#      the same tag is downloaded from the upstream repository. The version the archive unpacks is
#      verified before building; the patches in scripts/patches/ are applied (each says why). When
#      neither archive nor download can be had, one line says which features are off.
# The mirror for Debian's source package is derived from the machine's own apt sources: no host is
# written here. Builds are cached under $MARKETPIPE_BUILD_CACHE; a second run finds everything in
# place and exits in well under a second.
set -euo pipefail

log() { printf '[install-system] %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

CACHE_DIR="${MARKETPIPE_BUILD_CACHE:-/var/cache/marketpipe}"
TS_SOURCE_SUITE="${MARKETPIPE_TIMESCALEDB_SUITE:-trixie}"
TS_VERSION="${MARKETPIPE_TIMESCALEDB_VERSION:-2.28.3}"
PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TS_ARCHIVE="${MARKETPIPE_TIMESCALEDB_ARCHIVE:-$PROJECT_DIR/../shared/vendor/timescaledb-${TS_VERSION}.tar.gz}"
TS_UPSTREAM="https://github.com/timescale/timescaledb/archive/refs/tags/${TS_VERSION}.tar.gz"

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
default_version() { sed -n -E "s/^default_version = '(.*)'/\1/p" "$EXT_DIR/timescaledb.control" 2>/dev/null; }
# Patches applied to the upstream source before building (scripts/patches/timescaledb-<version>-*.patch,
# each says why); their digest stamps the build, so a changed patch rebuilds and reinstalls.
TS_PATCHES=$(ls "$PROJECT_DIR"/scripts/patches/timescaledb-"${TS_VERSION}"-*.patch 2>/dev/null || true)
TS_STAMP="$CACHE_DIR/timescaledb-${TS_VERSION}.installed"
patches_digest() { { echo "$TS_VERSION"; for f in $TS_PATCHES; do cat "$f"; done; } | sha256sum | cut -d' ' -f1; }
full_edition_installed() {
  [ -f "$LIB_DIR/timescaledb-tsl-${TS_VERSION}.so" ] && [ "$(default_version)" = "$TS_VERSION" ] \
    && [ "$(cat "$TS_STAMP" 2>/dev/null)" = "$(patches_digest)" ]
}
apache_edition_installed() { ls "$LIB_DIR"/timescaledb-[0-9]*.so 2>/dev/null | grep -v -q "timescaledb-${TS_VERSION}.so" ; }

# A private apt state (sources list, lists, archives under $CACHE_DIR) holding one deb-src entry for
# Debian's suite $1, so `apt-get source` can fetch a source package the local release lacks; the
# machine's own apt lists are untouched. Sets SRC_APT_OPTS for apt-get.
SRC_APT_OPTS=()
debian_source_apt_opts() {
  local suite="$1"
  mkdir -p "$CACHE_DIR/apt/lists/partial" "$CACHE_DIR/apt/archives/partial" "$CACHE_DIR/src"
  local src_list="$CACHE_DIR/apt/sources.list" mirror="" f
  # Derive the Debian mirror URI from the machine's own apt configuration.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    mirror=$(awk '/^URIs:/{u=$2} /^Suites:/{ if ($0 ~ /bookworm|trixie|bullseye|sid|stable/ && $0 !~ /security/) {print u; exit} }' "$f")
    [ -n "$mirror" ] && break
  done
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$mirror" ] || { log "cannot derive a Debian mirror from /etc/apt/sources*"; return 1; }
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror} ${suite} main" > "$src_list"
  SRC_APT_OPTS=(-o "Dir::Etc::SourceList=$src_list" -o "Dir::Etc::SourceParts=-" \
            -o "Dir::State::Lists=$CACHE_DIR/apt/lists" -o "Dir::Cache::Archives=$CACHE_DIR/apt/archives" \
            -o "APT::Get::List-Cleanup=0")
}

# 3. pgvector (the vector type and HNSW index behind news search, migration 0022): the
#    distribution's binary package where it has one for this major version, else Debian's source
#    package ($PGV_SOURCE_SUITE, 0.8.0) built against the local server headers with OPTFLAGS=""
#    (no -march=native: the library runs on any x86-64, not only on the machine that built it).
#    About 30 s; cached, and a second run only checks that the files are in place.
PGV_SOURCE_SUITE="${MARKETPIPE_PGVECTOR_SUITE:-trixie}"
pgvector_installed() { [ -f "$LIB_DIR/vector.so" ] && [ -f "$EXT_DIR/vector.control" ]; }
install_pgvector() {
  if apt-cache show "postgresql-${PG_MAJOR}-pgvector" >/dev/null 2>&1 \
     || { [ $apt_updated -eq 0 ] && $SUDO apt-get update -qq && apt_updated=1 && apt-cache show "postgresql-${PG_MAJOR}-pgvector" >/dev/null 2>&1; }; then
    apt_install "postgresql-${PG_MAJOR}-pgvector"
    log "pgvector installed from the distribution's binary package"
    return 0
  fi
  apt_install "postgresql-server-dev-${PG_MAJOR}" gcc make dpkg-dev
  debian_source_apt_opts "$PGV_SOURCE_SUITE" || return 1
  (
    cd "$CACHE_DIR/src"
    if ! ls -d pgvector-*/ >/dev/null 2>&1; then
      log "fetching Debian's ${PGV_SOURCE_SUITE} source package pgvector"
      $SUDO apt-get "${SRC_APT_OPTS[@]}" update -qq
      $SUDO apt-get "${SRC_APT_OPTS[@]}" source --download-only pgvector >/dev/null
      dpkg-source -x --no-check "$(ls pgvector_*.dsc | head -n1)" >/dev/null
    fi
    cd "$(ls -d pgvector-*/ | head -n1)"
    if [ "$(cat .built 2>/dev/null)" != "$PG_MAJOR" ]; then
      log "building pgvector for PostgreSQL ${PG_MAJOR} (about 30 s)"
      make clean PG_CONFIG="$PG_CONFIG" >/dev/null 2>&1 || true
      make -j"$(nproc)" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >"$CACHE_DIR/pgvector-build.log" 2>&1 \
        || { log "pgvector build failed (see $CACHE_DIR/pgvector-build.log)"; exit 1; }
      echo "$PG_MAJOR" > .built
    fi
    $SUDO make install PG_CONFIG="$PG_CONFIG" >>"$CACHE_DIR/pgvector-build.log" 2>&1
  ) || return 1
  log "pgvector built and installed into $LIB_DIR (log in $CACHE_DIR/pgvector-build.log)"
}
if ! pgvector_installed; then
  install_pgvector || { log "pgvector could not be installed (see above): news search needs it"; exit 1; }
fi

if full_edition_installed && apache_edition_installed; then
  log "TimescaleDB already installed for PostgreSQL ${PG_MAJOR} (${TS_VERSION}, full edition; Apache build beside it)"
  exit 0
fi

# 4. The Apache-only edition: the fallback and the upgrade test's starting version.
install_apache_edition() {
  # 3a. The distribution's binary package, where it exists for this major version.
  if apt-cache show "postgresql-${PG_MAJOR}-timescaledb" >/dev/null 2>&1 \
     || { [ $apt_updated -eq 0 ] && $SUDO apt-get update -qq && apt_updated=1 && apt-cache show "postgresql-${PG_MAJOR}-timescaledb" >/dev/null 2>&1; }; then
    apt_install "postgresql-${PG_MAJOR}-timescaledb"
    log "TimescaleDB (Apache edition) installed from the distribution's binary package"
    return 0
  fi
  # 3b. Build from Debian's source package against the local server headers.
  apt_install "postgresql-server-dev-${PG_MAJOR}" cmake gcc make dpkg-dev libssl-dev
  log "building TimescaleDB (Apache edition) from Debian's ${TS_SOURCE_SUITE} source package for PostgreSQL ${PG_MAJOR}"
  debian_source_apt_opts "$TS_SOURCE_SUITE" || return 1
  local apt_opts=("${SRC_APT_OPTS[@]}")
  (
    cd "$CACHE_DIR/src"
    if ! ls -d timescaledb-*+dfsg/ >/dev/null 2>&1; then
      $SUDO apt-get "${apt_opts[@]}" update -qq
      $SUDO apt-get "${apt_opts[@]}" source --download-only timescaledb >/dev/null
      dpkg-source -x --no-check "$(ls timescaledb_*.dsc | head -n1)" >/dev/null
    fi
    cd "$(ls -d timescaledb-*+dfsg/ | head -n1)"
    if [ ! -f build/.built ]; then
      rm -rf build
      ./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
        -DSEND_TELEMETRY_DEFAULT=NO -DPG_CONFIG="$PG_CONFIG" >"$CACHE_DIR/timescaledb-apache-bootstrap.log" 2>&1
      make -C build -j"$(nproc)" >"$CACHE_DIR/timescaledb-apache-build.log" 2>&1
      touch build/.built
    fi
    $SUDO make -C build install >>"$CACHE_DIR/timescaledb-apache-build.log" 2>&1
  )
  log "TimescaleDB (Apache edition) built and installed into $LIB_DIR (logs in $CACHE_DIR)"
}

# 5. The full edition from the upstream source archive (local, else downloaded).
fetch_full_archive() {
  local dest="$CACHE_DIR/src/timescaledb-${TS_VERSION}.tar.gz"
  if [ -f "$TS_ARCHIVE" ]; then
    if [ -f "${TS_ARCHIVE}.sha256" ]; then
      (cd "$(dirname "$TS_ARCHIVE")" && sha256sum --quiet -c "$(basename "$TS_ARCHIVE").sha256") \
        || { log "checksum mismatch for $TS_ARCHIVE (see ${TS_ARCHIVE}.sha256)"; return 1; }
    fi
    echo "$TS_ARCHIVE"; return 0
  fi
  if [ -f "$dest" ]; then echo "$dest"; return 0; fi
  log "no local archive at $TS_ARCHIVE; downloading TimescaleDB ${TS_VERSION} from the upstream repository" >&2
  if curl -fsSL --max-time 300 -o "$dest.part" "$TS_UPSTREAM" 2>/dev/null; then
    mv "$dest.part" "$dest"; echo "$dest"; return 0
  fi
  rm -f "$dest.part"
  return 1
}

install_full_edition() {
  local archive src
  archive=$(fetch_full_archive) || return 1
  apt_install "postgresql-server-dev-${PG_MAJOR}" cmake gcc make libssl-dev patch
  mkdir -p "$CACHE_DIR/src"
  src="$CACHE_DIR/src/timescaledb-${TS_VERSION}"
  if [ "$(cat "$src/build/.built" 2>/dev/null)" != "$(patches_digest)" ]; then
    rm -rf "$src"
    # The archive's top directory is timescaledb-<version> (git archive and the upstream tag both).
    tar xzf "$archive" -C "$CACHE_DIR/src"
    [ -f "$src/version.config" ] || { log "$archive did not unpack to timescaledb-${TS_VERSION}/"; return 1; }
    local found
    found=$(sed -n -E 's/^version = (.*)$/\1/p' "$src/version.config")
    if [ "$found" != "$TS_VERSION" ]; then
      log "$archive holds TimescaleDB $found, not ${TS_VERSION}; point MARKETPIPE_TIMESCALEDB_ARCHIVE at the ${TS_VERSION} archive"
      return 1
    fi
    local patch
    for patch in $TS_PATCHES; do
      patch -d "$src" -p1 --quiet --forward < "$patch" || { log "patch $patch does not apply to ${TS_VERSION}"; return 1; }
      log "applied $(basename "$patch")"
    done
    log "building TimescaleDB ${TS_VERSION} (full edition, with tsl/) for PostgreSQL ${PG_MAJOR} (about 2.5 min on 2 cores)"
    (cd "$src" && ./bootstrap -DCMAKE_BUILD_TYPE=Release -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=NO -DPG_CONFIG="$PG_CONFIG" \
        >"$CACHE_DIR/timescaledb-full-bootstrap.log" 2>&1) \
      || { log "TimescaleDB ${TS_VERSION} configure failed (see $CACHE_DIR/timescaledb-full-bootstrap.log)"; return 1; }
    make -C "$src/build" -j"$(nproc)" >"$CACHE_DIR/timescaledb-full-build.log" 2>&1 \
      || { log "TimescaleDB ${TS_VERSION} build failed (see $CACHE_DIR/timescaledb-full-build.log)"; return 1; }
    patches_digest > "$src/build/.built"
  fi
  $SUDO make -C "$src/build" install >>"$CACHE_DIR/timescaledb-full-build.log" 2>&1
  patches_digest | $SUDO tee "$TS_STAMP" >/dev/null
  log "TimescaleDB ${TS_VERSION} (full edition) installed into $LIB_DIR"
}

if ! apache_edition_installed; then
  install_apache_edition || log "the Apache build could not be installed (see above)"
fi
# Installing the Apache build rewrites the control file and the loader: the full edition goes last.
if ! full_edition_installed; then
  if ! install_full_edition; then
    apache_edition_installed || { log "no TimescaleDB could be installed"; exit 1; }
    log "TimescaleDB full edition unavailable (no archive at $TS_ARCHIVE and no download): running the Apache edition, so native compression, compression policies, continuous aggregates and the job scheduler are OFF; set MARKETPIPE_TIMESCALEDB_ARCHIVE to a timescaledb-${TS_VERSION}.tar.gz and rerun \`make install\`"
  fi
fi
