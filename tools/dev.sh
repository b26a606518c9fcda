#!/usr/bin/env bash
# Developer entry point: installs what is missing (Debian 12), builds, runs or tests ringcast.
#
#   tools/dev.sh run [ARGS]   build, then run build/ringcast ARGS (default: built-in config)
#   tools/dev.sh test         build with -Werror and run the whole test suite (ctest)
#   tools/dev.sh asan         build with AddressSanitizer/UBSan into build-asan and run the suite
#   tools/dev.sh format       check that every C file matches .clang-format
#   tools/dev.sh deps         only install the packages
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

packages=(build-essential cmake pkg-config liburing-dev libjemalloc-dev libwolfssl-dev
          libinih-dev zlib1g-dev redis-tools curl nodejs npm clang-format)

deps() {
    local missing=()
    for p in "${packages[@]}"; do
        # Node.js may come from elsewhere than Debian; what matters is that it runs.
        if [[ $p == nodejs || $p == npm ]] && command -v "${p/nodejs/node}" >/dev/null; then
            continue
        fi
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        local sudo=""
        [[ $(id -u) == 0 ]] || sudo=sudo
        echo "dev.sh: installing ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

build() { # build DIR [cmake options]
    local dir=$1
    shift
    cmake -S . -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j"$(nproc)"
}

node_modules() {
    (cd tests/integration && npm ci --no-audit --no-fund --loglevel=error)
}

case "${1:-}" in
deps)
    deps
    ;;
run)
    shift
    deps
    build build
    exec build/ringcast "$@"
    ;;
test)
    deps
    build build -DRC_WERROR=ON
    node_modules
    cd build && ctest --output-on-failure
    ;;
asan)
    deps
    build build-asan -DRC_WERROR=ON -DRC_ASAN=ON
    node_modules
    cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure
    ;;
format)
    deps
    git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror
    echo "dev.sh: formatting OK"
    ;;
*)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
