#!/usr/bin/env bash
#
# build-images.sh: build warden's local Docker images without any image registry.
#
# The images carry the names that studies use (ghcr.io/opensafely-core/<name>:<tag>)
# but are built here from Debian packages:
#
#   busybox          FROM-scratch image holding Debian's static busybox
#   python           debootstrap'd Debian (minbase) + python3; tags v2, v1, latest
#   cohortextractor  same rootfs, entrypoint = warden's stand-in cohortextractor;
#                    tags latest, v1
#
# Image sources (entrypoints, the stand-in) live in images/ next to this script's
# directory; see images/README.md.
#
# Usage: scripts/build-images.sh [--force] [--list] [IMAGE...]
#
# Environment:
#   WARDEN_CACHE          cache root (default ~/.cache/warden); the debootstrap rootfs
#                         tarball and fetched .debs go in $WARDEN_CACHE/images/
#   WARDEN_IMAGE_PREFIX   image name prefix (default ghcr.io/opensafely-core)
#   WARDEN_DEBIAN_SUITE   Debian suite for the rootfs (default: this host's codename)
#   WARDEN_DEBIAN_MIRROR  Debian mirror (default: the one apt's sources list names)

set -euo pipefail

# Bump when the rootfs recipe changes, so a stale cached tarball is not reused.
readonly ROOTFS_RECIPE=1
readonly ALL_IMAGES=(busybox python cohortextractor)
readonly ROOTFS_PACKAGES=python3,python-is-python3
readonly IMAGE_PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

PREFIX=${WARDEN_IMAGE_PREFIX:-ghcr.io/opensafely-core}
CACHE_DIR=${WARDEN_CACHE:-$HOME/.cache/warden}/images
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR=$(dirname "$SCRIPT_DIR")/images

FORCE=0
APT_UPDATED=0
TEMP_DIRS=()

log() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'build-images: warning: %s\n' "$*" >&2; }
die() {
    printf 'build-images: error: %s\n' "$*" >&2
    exit 1
}

# Print a command (without the as_root wrapper), then run it.
run() {
    if [[ $1 == as_root ]]; then
        printf '    # %s\n' "${*:2}"
    else
        printf '    $ %s\n' "$*"
    fi
    "$@"
}

# Like run, but discard the command's standard output.
run_quiet() {
    run "$@" >/dev/null
}

usage() {
    cat <<EOF
Usage: $(basename "$0") [--force] [--list] [IMAGE...]

Build warden's local Docker images from Debian packages (no registry needed).
With no IMAGE, builds all of: ${ALL_IMAGES[*]}.
An IMAGE may be a short name (python), name:tag or a full reference.

  -f, --force   rebuild images that are already present
  -l, --list    print the image references this script builds, then exit
  -h, --help    show this help

Images already present are skipped. The Debian rootfs used by python and
cohortextractor is cached in ${CACHE_DIR}/; delete it to start from nothing.
EOF
}

refs_for() {
    case $1 in
        busybox) echo "$PREFIX/busybox:latest" ;;
        python) echo "$PREFIX/python:v2 $PREFIX/python:v1 $PREFIX/python:latest" ;;
        cohortextractor) echo "$PREFIX/cohortextractor:latest $PREFIX/cohortextractor:v1" ;;
        *) die "unknown image '$1'" ;;
    esac
}

# Set IMAGE_NAME from "python", "python:v1" or "ghcr.io/opensafely-core/python:v1".
IMAGE_NAME=""
image_name() {
    local name=${1##*/}
    name=${name%%:*}
    local known
    for known in "${ALL_IMAGES[@]}"; do
        if [[ $name == "$known" ]]; then
            IMAGE_NAME=$name
            return 0
        fi
    done
    die "unknown image '$1' (known images: ${ALL_IMAGES[*]})"
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$1' needs root and sudo is not available"
    fi
}

apt_update_once() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        run as_root apt-get update -qq
        APT_UPDATED=1
    fi
}

# ensure_cmd COMMAND PACKAGE: install PACKAGE with apt-get when COMMAND is missing.
ensure_cmd() {
    if ! command -v "$1" >/dev/null 2>&1; then
        log "installing $2 (for $1)"
        apt_update_once
        run_quiet as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "$2"
    fi
}

# make_temp_dir VAR: create a scratch directory (removed on exit) and store its path
# in VAR. It lives in the cache directory so finished files can be moved into place.
make_temp_dir() {
    local _mtd_path
    _mtd_path=$(mktemp -d "$CACHE_DIR/tmp.XXXXXX")
    TEMP_DIRS+=("$_mtd_path")
    printf -v "$1" '%s' "$_mtd_path"
}

# Unmount anything left mounted below DIR (an interrupted debootstrap leaves /proc,
# /sys and device bind mounts behind), deepest first.
unmount_below() {
    local dir=$1 mnt
    [[ -r /proc/self/mounts ]] || return 0
    awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r mnt; do
            as_root umount -l "$mnt" 2>/dev/null || true
        done
}

cleanup() {
    local dir
    for dir in "${TEMP_DIRS[@]}"; do
        [[ -d $dir ]] || continue
        unmount_below "$dir"
        as_root rm -rf --one-file-system "$dir" 2>/dev/null || true
    done
}

image_present() {
    docker image inspect "$1" >/dev/null 2>&1
}

# A hash of the files an image is made from, stored as a label so that a
# present-but-outdated image can be pointed out.
source_hash() {
    local name=$1 files=()
    case $name in
        busybox) ;;
        python | cohortextractor)
            files=("$SRC_DIR/python/entrypoint.sh" "$SRC_DIR/cohortextractor/cohortextractor.py")
            ;;
    esac
    {
        echo "recipe=$ROOTFS_RECIPE packages=$ROOTFS_PACKAGES image=$name"
        if [[ ${#files[@]} -gt 0 ]]; then cat "${files[@]}"; fi
    } | sha256sum | cut -c1-16
}

# ---------------------------------------------------------------------------------
# Debian sources

host_codename() {
    local codename=""
    if [[ -r /etc/os-release ]]; then
        # shellcheck source=/dev/null
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    fi
    [[ -n $codename ]] || die "cannot tell this host's Debian codename; set WARDEN_DEBIAN_SUITE"
    echo "$codename"
}

# The first mirror in apt's sources that serves SUITE (deb822 .sources files and
# one-line .list files are both read).
apt_mirror() {
    local suite=$1 file uri=""
    if [[ -n ${WARDEN_DEBIAN_MIRROR:-} ]]; then
        echo "$WARDEN_DEBIAN_MIRROR"
        return 0
    fi
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $file ]] || continue
        uri=$(awk -v s="$suite" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == s) { print $i; exit }
            }' "$file")
        [[ -z $uri ]] || break
    done
    if [[ -z $uri ]]; then
        for file in /etc/apt/sources.list.d/*.sources; do
            [[ -r $file ]] || continue
            uri=$(awk -v s="$suite" '
                BEGIN { RS = ""; FS = "\n" }
                {
                    types = ""; uris = ""; suites = ""; enabled = "yes"
                    for (i = 1; i <= NF; i++) {
                        line = $i
                        if (line ~ /^#/) continue
                        key = tolower(line); sub(/:.*/, "", key)
                        val = line; sub(/^[^:]*:[ \t]*/, "", val)
                        if (key == "types") types = val
                        else if (key == "uris") uris = val
                        else if (key == "suites") suites = val
                        else if (key == "enabled") enabled = tolower(val)
                    }
                    if (enabled == "no" || (" " types " ") !~ / deb /) next
                    if ((" " suites " ") ~ (" " s " ")) { split(uris, u, " "); print u[1]; exit }
                }' "$file")
            [[ -z $uri ]] || break
        done
    fi
    if [[ -z $uri ]]; then
        warn "no apt source for suite '$suite' found; using http://deb.debian.org/debian"
        uri=http://deb.debian.org/debian
    fi
    echo "$uri"
}

# fetch_deb PACKAGE: set DEB to the path of a cached .deb of PACKAGE, downloading it
# with `apt-get download` the first time.
DEB=""
fetch_deb() {
    local pkg=$1 dir="$CACHE_DIR/debs"
    mkdir -p "$dir"
    DEB=$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n 1)
    if [[ -n $DEB ]]; then
        note "using cached $DEB"
        return 0
    fi
    log "downloading $pkg from the Debian archive"
    if ! (cd "$dir" && run apt-get download -q -o APT::Sandbox::User=root "$pkg"); then
        apt_update_once
        (cd "$dir" && run apt-get download -q -o APT::Sandbox::User=root "$pkg") ||
            die "apt-get download $pkg failed"
    fi
    DEB=$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n 1)
    [[ -n $DEB ]] || die "apt-get download $pkg produced no .deb"
}

# ---------------------------------------------------------------------------------
# busybox

build_busybox() {
    local ref deb work root applet hash version
    ref=$(refs_for busybox)
    ensure_cmd dpkg-deb dpkg
    fetch_deb busybox-static
    deb=$DEB
    make_temp_dir work
    root=$work/rootfs
    run dpkg-deb -x "$deb" "$work/deb"
    [[ -x $work/deb/bin/busybox ]] || die "$deb has no bin/busybox"

    log "assembling the busybox rootfs"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    chmod 0700 "$root/root"
    install -m 0755 "$work/deb/bin/busybox" "$root/bin/busybox"
    # Every applet (bin/sh, usr/bin/awk, ...) becomes a symlink to /bin/busybox.
    while read -r applet; do
        [[ -n $applet && $applet != bin/busybox ]] || continue
        mkdir -p "$root/$(dirname "$applet")"
        ln -sf /bin/busybox "$root/$applet"
    done < <("$root/bin/busybox" --list-full)
    [[ -L $root/bin/sh ]] || die "busybox provides no bin/sh applet"
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
    version=$(dpkg-deb -f "$deb" Version)
    note "$(find "$root" -type l | wc -l) applet links; busybox $version"

    hash=$(source_hash busybox)
    log "importing $ref"
    note "docker import (CMD [\"sh\"]) of the rootfs"
    tar --numeric-owner --owner=0 --group=0 -C "$root" -cf - . |
        docker import \
            --change "ENV PATH=$IMAGE_PATH_ENV" \
            --change 'CMD ["sh"]' \
            --change "LABEL org.opencontainers.image.title=\"busybox\"" \
            --change "LABEL org.opencontainers.image.description=\"warden local image: Debian busybox-static\"" \
            --change "LABEL org.opencontainers.image.version=\"$version\"" \
            --change "LABEL dev.warden.source-hash=\"$hash\"" \
            --message "warden build-images.sh: Debian busybox-static" \
            - "$ref" >/dev/null
}

# ---------------------------------------------------------------------------------
# python and cohortextractor: one debootstrap rootfs, cached as a tarball

slim_rootfs() {
    local root=$1
    note "removing apt lists and caches, docs, man pages, locales, logs"
    as_root rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
        "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
        "$root"/usr/share/man "$root"/usr/share/info "$root"/usr/share/locale \
        "$root"/usr/share/lintian "$root"/usr/share/linda "$root"/var/log/* \
        "$root"/tmp/* "$root"/var/tmp/* "$root"/debootstrap
    # Keep each package's copyright file; drop the rest of /usr/share/doc.
    as_root find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    as_root find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    as_root mkdir -p "$root/var/lib/apt/lists/partial"
    # Keep docs out of anything installed later, too.
    as_root tee "$root/etc/dpkg/dpkg.cfg.d/01-warden-nodoc" >/dev/null <<'EOF'
# Installed by warden's scripts/build-images.sh: keep the image small.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    as_root truncate -s 0 "$root/etc/machine-id"
}

# Set ROOTFS_TARBALL to the cached rootfs tarball, creating it first when missing.
ROOTFS_TARBALL=""
rootfs_tarball() {
    local suite arch mirror work
    suite=${WARDEN_DEBIAN_SUITE:-$(host_codename)}
    ensure_cmd dpkg dpkg
    arch=$(dpkg --print-architecture)
    ROOTFS_TARBALL="$CACHE_DIR/debian-$suite-$arch-minbase-python3-r$ROOTFS_RECIPE.tar.gz"
    if [[ -s $ROOTFS_TARBALL ]]; then
        log "using cached rootfs $ROOTFS_TARBALL"
        return 0
    fi
    ensure_cmd debootstrap debootstrap
    mirror=$(apt_mirror "$suite")
    make_temp_dir work
    log "debootstrap: Debian $suite ($arch, minbase + $ROOTFS_PACKAGES) from $mirror"
    local cmd=(debootstrap --variant=minbase --include="$ROOTFS_PACKAGES"
        --components=main --arch="$arch" "$suite" "$work/rootfs" "$mirror")
    printf '    # %s\n' "${cmd[*]}"
    # Show debootstrap's stages, warnings and errors; hide its per-package lines.
    if ! as_root "${cmd[@]}" 2>&1 | awk '
        /^I: (Retrieving (InRelease|Release|Packages)|Resolving|Installing|Configuring the|Base system)/ ||
        !/^I: / { print "    " $0; fflush() }'; then
        tail -n 20 "$work/rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
        die "debootstrap failed"
    fi
    unmount_below "$work/rootfs"
    slim_rootfs "$work/rootfs"
    log "caching the rootfs as $ROOTFS_TARBALL"
    as_root tar --numeric-owner -C "$work/rootfs" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf - . | gzip -1 >"$work/rootfs.tar.gz"
    mv "$work/rootfs.tar.gz" "$ROOTFS_TARBALL"
    note "$(du -h "$ROOTFS_TARBALL" | cut -f1) compressed"
}

# Write to OUT the rootfs tarball plus warden's files (entrypoint, stand-in,
# /workspace). python and cohortextractor import this same tar, so they share one
# layer; fixed owners and mtimes keep it identical from one build to the next.
assemble_python_tar() {
    local out=$1 stage
    rootfs_tarball
    make_temp_dir stage
    log "adding warden's entrypoint and cohortextractor stand-in to the rootfs"
    gzip -dc "$ROOTFS_TARBALL" >"$out"
    install -D -m 0755 "$SRC_DIR/python/entrypoint.sh" "$stage/usr/local/bin/python-entrypoint"
    install -D -m 0755 "$SRC_DIR/cohortextractor/cohortextractor.py" "$stage/usr/local/bin/cohortextractor"
    mkdir -m 0755 "$stage/workspace"
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$stage" -rf "$out" \
        ./usr/local/bin/python-entrypoint ./usr/local/bin/cohortextractor
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 --no-recursion -C "$stage" -rf "$out" \
        ./workspace
}

python_version_of() {
    docker run --rm --network none --entrypoint python3 "$1" \
        -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'
}

# import_rootfs TAR REF ENTRYPOINT TITLE DESCRIPTION HASH VERSION
import_rootfs() {
    local tar=$1 ref=$2 entrypoint=$3 title=$4 description=$5 hash=$6 version=$7
    log "importing $ref"
    docker import \
        --change "ENV PATH=$IMAGE_PATH_ENV" \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PYTHONUNBUFFERED=1' \
        --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
        --change 'WORKDIR /workspace' \
        --change "ENTRYPOINT [\"$entrypoint\"]" \
        --change "LABEL org.opencontainers.image.title=\"$title\"" \
        --change "LABEL org.opencontainers.image.description=\"$description\"" \
        --change "LABEL org.opencontainers.image.version=\"$version\"" \
        --change "LABEL dev.warden.source-hash=\"$hash\"" \
        --message "warden build-images.sh: $description" \
        "$tar" "$ref" >/dev/null
}

tag_all() {
    local first=$1 ref
    shift
    for ref in "$@"; do
        run docker tag "$first" "$ref"
    done
}

PYTHON_TAR=""
python_tar() {
    local dir
    if [[ -z $PYTHON_TAR ]]; then
        make_temp_dir dir
        PYTHON_TAR=$dir/rootfs.tar
        assemble_python_tar "$PYTHON_TAR"
    fi
}

build_python() {
    local refs
    read -r -a refs <<<"$(refs_for python)"
    python_tar
    import_rootfs "$PYTHON_TAR" "${refs[0]}" /usr/local/bin/python-entrypoint python \
        "warden local image: Debian python3 (stand-in for OpenSAFELY python)" \
        "$(source_hash python)" "$(basename "$ROOTFS_TARBALL" .tar.gz)"
    tag_all "${refs[@]}"
}

build_cohortextractor() {
    local refs
    read -r -a refs <<<"$(refs_for cohortextractor)"
    python_tar
    import_rootfs "$PYTHON_TAR" "${refs[0]}" /usr/local/bin/cohortextractor cohortextractor \
        "warden local image: dummy-data stand-in for OpenSAFELY cohortextractor" \
        "$(source_hash cohortextractor)" \
        "$(sed -n 's/^VERSION = "\(.*\)"$/\1/p' "$SRC_DIR/cohortextractor/cohortextractor.py")"
    tag_all "${refs[@]}"
}

# Quick checks that a freshly built image works.
smoke_test() {
    local name=$1 ref out
    ref=$(refs_for "$name")
    ref=${ref%% *}
    case $name in
        busybox)
            out=$(docker run --rm --network none "$ref" sh -c 'echo ok')
            ;;
        python)
            out=$(docker run --rm --network none "$ref" python -c 'import csv, json; print("ok")')
            note "python $(python_version_of "$ref")"
            ;;
        cohortextractor)
            note "cohortextractor $(docker run --rm --network none "$ref" --version)"
            out=$(docker run --rm --network none --workdir /tmp "$ref" generate_cohort \
                --study-definition study_definition --expectations-population 3 \
                --index-date-range '2020-01-01 to 2020-02-01 by month' 2>/dev/null |
                grep -c '^Successfully created' || true)
            [[ $out == 2 ]] && out=ok
            ;;
    esac
    [[ $out == ok ]] || die "smoke test of $ref failed (got: $out)"
}

# ---------------------------------------------------------------------------------

main() {
    local args=() arg name
    while [[ $# -gt 0 ]]; do
        case $1 in
            -f | --force) FORCE=1 ;;
            -l | --list)
                for name in "${ALL_IMAGES[@]}"; do
                    # shellcheck disable=SC2046 # split the list of references
                    printf '%s\n' $(refs_for "$name")
                done
                return 0
                ;;
            -h | --help)
                usage
                return 0
                ;;
            --) ;;
            -*)
                usage >&2
                die "unknown option '$1'"
                ;;
            *)
                image_name "$1"
                args+=("$IMAGE_NAME")
                ;;
        esac
        shift
    done

    # Build in a fixed order (busybox first: it takes seconds), each image once.
    local wanted=() known
    for known in "${ALL_IMAGES[@]}"; do
        if [[ ${#args[@]} -eq 0 ]]; then
            wanted+=("$known")
            continue
        fi
        for arg in "${args[@]}"; do
            if [[ $arg == "$known" ]]; then
                wanted+=("$known")
                break
            fi
        done
    done

    command -v docker >/dev/null 2>&1 || die "docker is not installed"
    docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is it running?)"
    mkdir -p "$CACHE_DIR"
    trap cleanup EXIT

    # Serialise concurrent runs (e.g. test suites starting several at once).
    exec 9>"$CACHE_DIR/.build.lock"
    if ! flock -n 9; then
        log "waiting for another build-images.sh to finish"
        flock 9
    fi

    local start=$SECONDS t0 refs ref missing label hash built=()
    for name in "${wanted[@]}"; do
        read -r -a refs <<<"$(refs_for "$name")"
        missing=0
        for ref in "${refs[@]}"; do
            image_present "$ref" || missing=1
        done
        if [[ $FORCE -eq 0 && $missing -eq 0 ]]; then
            log "$name: present, skipping (${refs[*]}; --force rebuilds)"
            hash=$(source_hash "$name")
            label=$(docker image inspect --format \
                '{{ index .Config.Labels "dev.warden.source-hash" }}' "${refs[0]}" 2>/dev/null || true)
            if [[ $label != "$hash" ]]; then
                warn "$name was built from other sources than images/ holds now; rebuild it with: $0 --force $name"
            fi
            continue
        fi
        t0=$SECONDS
        log "$name: building ${refs[*]}"
        "build_$name"
        smoke_test "$name"
        log "$name: done in $((SECONDS - t0))s"
        built+=("$name")
    done

    if [[ ${#built[@]} -gt 0 ]]; then
        log "built ${built[*]} in $((SECONDS - start))s"
    fi
    for name in "${wanted[@]}"; do
        read -r -a refs <<<"$(refs_for "$name")"
        docker image ls --format '{{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' "${refs[0]%:*}" |
            sed 's/^/    /'

    done
}

main "$@"
