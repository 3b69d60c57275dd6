# Sourced by `serve` and `test`: make ./.venv with the interpreter Confide runs fastest on.
#
# The interpreter is CONFIDE_PYTHON when set. Otherwise it is the distribution's own
# /usr/bin/python3 when that is Python 3.11 or newer and can make a venv, and only then
# the first python3 on PATH. Distributions build CPython with profile-guided
# optimisation and link-time optimisation; pyenv and plain source builds do not unless
# asked. On the same host, a node on Debian's 3.11.2 ran 5-7 % less CPU for the same load
# than one on a pyenv-built 3.11.7 (docs/operations.md, "Which Python").
#
# A .venv made by another interpreter (or one whose interpreter is gone) is made again from
# scratch: its packages would be those of the other interpreter.

pick_python() {
  if [ -n "${CONFIDE_PYTHON:-}" ]; then
    if ! "$CONFIDE_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "CONFIDE_PYTHON=$CONFIDE_PYTHON is not a Python 3.11 or newer that runs here" >&2
      return 1
    fi
    echo "$CONFIDE_PYTHON"
    return
  fi
  local py
  for py in /usr/bin/python3 python3; do
    # Debian's python3 can make a venv only with python3-venv (which brings ensurepip).
    if command -v "$py" >/dev/null 2>&1 && "$py" -c \
        'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"
      return
    fi
  done
  echo "no Python 3.11 or newer that can make a venv: install python3 and python3-venv," \
       "or set CONFIDE_PYTHON" >&2
  return 1
}

make_venv() {
  local py base made
  py=$(pick_python) || return 1
  base=$("$py" -c 'import os, sys; print(os.path.realpath(sys.executable))')
  if [ -e .venv ]; then
    made=$(.venv/bin/python -c 'import os, sys; print(os.path.realpath(sys._base_executable))' \
           2>/dev/null || true)
    if [ "$made" != "$base" ]; then
      echo "making .venv again with $base (it was made with ${made:-an interpreter that is gone})"
      "$py" -m venv --clear .venv
      return
    fi
  fi
  "$py" -m venv .venv
}
