"""Installed like a library: a wheel built from the tree installs into a fresh virtual environment and its
commands run outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("pix2pix-tr-train", "pix2pix-tr-test", "pix2pix-tr-demo", "pix2pix-tr-fcn-score",
            "pix2pix-tr-train-scorer", "pix2pix-tr-prepare-cityscapes", "pix2pix-tr-synthetic-city")


def _source_copy(dest: Path) -> Path:
    """The package sources alone (no build/ left over from an earlier build, no outputs, no .git)."""
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    for package in ("pix2pix_tr", "evaluation"):
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _isolation_flags() -> list[str]:
    """``--no-build-isolation`` (build with this interpreter's setuptools: quick, no registry) when its setuptools
    meets pyproject.toml's build requirement; otherwise none, and pip makes the isolated build environment
    pyproject.toml asks for (a fresh venv of Python 3.11 comes with setuptools 65)."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, version

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    (spec,) = [r for r in requires if r.startswith("setuptools")]
    floor = int(spec.partition(">=")[2].split(".")[0] or 0)
    try:
        have = int(version("setuptools").split(".")[0])
    except PackageNotFoundError:
        return []
    return ["--no-build-isolation"] if have >= floor else []


@pytest.mark.slow
def test_wheel_installs_and_the_demo_runs_outside_the_checkout(tmp_path):
    (tmp_path / "src").mkdir()
    src = _source_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *_isolation_flags(), "-q", "-w",
                            str(wheels), str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = wheels.glob("pix2pix_tr-*.whl")
    venv = tmp_path / "venv"
    # the dependencies (torch, ...) come from this interpreter's site-packages; the project itself from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, text=True, timeout=300)
    for command in COMMANDS:
        assert (venv / "bin" / command).is_file(), f"{command} was not installed"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    where = subprocess.run([str(python), "-c", "import pix2pix_tr.demo, evaluation; "
                            "print(pix2pix_tr.demo.__file__); print(pix2pix_tr.demo.ROOT)"],
                           cwd=outside, env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    assert str(venv) in where[0] and where[1] == "None", where  # the wheel's copy, not the checkout's

    proc = subprocess.run([str(venv / "bin" / "pix2pix-tr-demo"), "--preset", "tiny", "--out", "demo", "--device",
                           "cpu"], cwd=outside, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "$ pix2pix-tr-train --dataroot" in proc.stdout and "$ python train.py" not in proc.stdout
    assert (outside / "demo" / "demo_summary.json").is_file()
    assert (outside / "demo" / "fcn_score_table.md").read_text().startswith("| Method |")

    # user errors of an installed command: one sentence and exit status 2, as from the checkout
    bad = subprocess.run([str(venv / "bin" / "pix2pix-tr-fcn-score"), "--result_dir", "nowhere", "--cityscapes_dir",
                          "nowhere", "--scorer", "none.pth", "--output_dir", "o"], cwd=outside, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
