"""scripts/venv.sh, sourced by the README's two commands: which interpreter makes .venv,
and a .venv of another interpreter made again rather than reused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "venv.sh"
BASE = os.path.realpath(sys._base_executable)  # the interpreter under this test's venv


def _bash(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f". {SCRIPT}\n{code}"], cwd=cwd, text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, "CONFIDE_PYTHON": "", **env})


def test_confide_python_is_used_when_it_is_a_python_3_11_or_newer(tmp_path: Path) -> None:
    done = _bash("pick_python", tmp_path, CONFIDE_PYTHON=BASE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == BASE


def test_a_confide_python_that_does_not_run_is_refused_by_name(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-python")
    done = _bash("pick_python", tmp_path, CONFIDE_PYTHON=missing)
    assert done.returncode == 1
    assert f"CONFIDE_PYTHON={missing} is not a Python 3.11 or newer" in done.stderr


def test_the_distributions_python_comes_before_the_one_on_path(tmp_path: Path) -> None:
    usable = Path("/usr/bin/python3").exists() and subprocess.run(
        ["/usr/bin/python3", "-c",
         "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
        capture_output=True).returncode == 0
    done = _bash("pick_python", tmp_path)
    assert done.returncode == 0, done.stderr
    if usable:
        assert done.stdout.strip() == "/usr/bin/python3"
    else:  # no distribution interpreter that can make a venv: the first python3 on PATH
        assert done.stdout.strip() == "python3"


@pytest.mark.slow
def test_a_venv_of_a_gone_interpreter_is_made_again_and_a_good_one_kept(tmp_path: Path) -> None:
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(tmp_path / "gone" / "python3")  # its interpreter is gone
    (tmp_path / ".venv" / "stale").write_text("left by the old interpreter")

    done = _bash("make_venv", tmp_path, CONFIDE_PYTHON=BASE)
    assert done.returncode == 0, done.stderr
    assert f"making .venv again with {BASE}" in done.stdout
    assert not (tmp_path / ".venv" / "stale").exists()
    made = subprocess.run([str(venv_bin / "python"), "-c",
                           "import os, sys; print(os.path.realpath(sys._base_executable))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert made == BASE

    (tmp_path / ".venv" / "mine").write_text("installed by the user")
    again = _bash("make_venv", tmp_path, CONFIDE_PYTHON=BASE)
    assert again.returncode == 0, again.stderr
    assert "again" not in again.stdout
    assert (tmp_path / ".venv" / "mine").exists()
