# Sourced by scripts/serve and scripts/test: make the virtual environment and install into it.
#
# torch is pinned to 2.13.0 *before* anything that depends on it is installed:
# an unpinned torch pulls the registry's newest CUDA build and gigabytes of
# packages. On a CPU machine the pin takes the CPU build, on a GPU machine the
# CUDA one. Every install is constrained by constraints.txt, the lock (scripts/lock
# writes it), so every machine gets the versions the suite was run with. The client
# distribution (client/: the SDK and the `inpaint` CLI) is installed too, editable.
# Installs are skipped when neither pyproject.toml nor the lock has changed.

VENV="${INPAINT_VENV:-.venv}"
TORCH_VERSION="2.13.0"

find_python() {
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 or newer is needed" >&2; return 1
}

# ensure_venv EXTRAS: e.g. "worker" or "worker,test"
ensure_venv() {
  local extras="$1" python stamp
  if [ ! -x "$VENV/bin/python" ]; then
    python="$(find_python)"
    echo "creating the virtual environment in $VENV"
    "$python" -m venv "$VENV"
  fi
  stamp="$VENV/.installed-$(cat pyproject.toml client/pyproject.toml constraints.txt | sha256sum | cut -c1-12)-${extras//,/-}"
  if [ -f "$stamp" ]; then return 0; fi
  local log="$VENV/install.log"
  echo "installing into $VENV (torch $TORCH_VERSION first; log: $log)"
  {
    "$VENV/bin/python" -m pip install --upgrade pip &&
    "$VENV/bin/python" -m pip install -c constraints.txt "torch==$TORCH_VERSION" &&
    "$VENV/bin/python" -m pip install -c constraints.txt -e ".[$extras]" &&
    "$VENV/bin/python" -m pip install -c constraints.txt -e ./client
  } >"$log" 2>&1 || { tail -n 30 "$log" >&2; echo "error: the install failed; see $log" >&2; return 1; }
  "$VENV/bin/python" -c "import torch, diffusers, api, worker, storage, inpaint_client" ||
    { echo "error: the install is incomplete; see $log" >&2; return 1; }
  rm -f "$VENV"/.installed-*
  touch "$stamp"
}

# apt_install PACKAGE...: install Debian packages when missing (needs root or sudo).
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "${APT_UPDATED:-}" ]; then $sudo apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
