"""Installed like a library: a wheel built from the tree installs into a clean virtual environment holding only
the distributions its requirements bring in, and its commands run outside the checkout."""

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


def _requirements_of(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(name).decode("utf-8")
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def _dependency_closure(requirements: list[str]) -> dict:
    """The installed distributions that ``pip install`` of a package with these requirements would bring into a
    clean environment: the requirements (markers evaluated here, extras followed) and theirs, recursively. A
    direct requirement that is not installed here skips the test (this environment could not run the package);
    a missing indirect one is left out (torch, say, runs without its optional CUDA pieces)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def wanted(text: str, extras=()) -> bool:  # markers as pip evaluates them here, with the extras asked for
        marker = Requirement(text).marker
        return marker is None or any(marker.evaluate({"extra": extra}) for extra in ["", *extras])

    found: dict = {}
    todo = [(r, True) for r in requirements if wanted(r)]  # the package's own extras ([test], ...) not asked for
    while todo:
        text, direct = todo.pop()
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name in found:
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            if direct:
                pytest.skip(f"{req.name}, a dependency of the package, is not installed in this environment")
            continue
        found[name] = dist
        todo += [(dep, False) for dep in dist.requires or [] if wanted(dep, req.extras)]
    return found


def _link(source: Path, target: Path) -> None:
    """``target`` shows ``source``: a symbolic link, or, where two distributions share a folder (a namespace
    package), a real folder holding links to both's entries."""
    if not target.exists() and not target.is_symlink():
        target.symlink_to(source)
        return
    if target.resolve() == source.resolve():
        return
    if not (source.is_dir() and target.is_dir()):
        return  # one file installed by two distributions: the first one wins, as on a real disk
    if target.is_symlink():
        earlier = target.resolve()
        target.unlink()
        target.mkdir()
        for child in earlier.iterdir():
            (target / child.name).symlink_to(child)
    for child in source.iterdir():
        _link(child, target / child.name)


def _clean_venv_with(venv: Path, distributions: dict) -> Path:
    """A venv without the system site-packages, in which exactly ``distributions`` are installed, as a user's
    ``pip install`` would have put them there: their files, linked from where this interpreter has them into a
    site folder the venv reads (nothing is downloaded). Returns the venv's python."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site_dir = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    deps = venv / "dependencies"
    deps.mkdir()
    for dist in distributions.values():
        root = Path(dist.locate_file(""))
        for top in sorted({Path(f).parts[0] for f in dist.files or [] if Path(f).parts[0] != ".."}):
            if (root / top).exists():
                _link(root / top, deps / top)
    # a site folder of its own, so that .pth files of those distributions work as they do when installed
    (site_dir / "dependencies.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    return python


@pytest.mark.slow
def test_wheel_installs_and_the_demo_runs_outside_the_checkout(tmp_path):
    """What a user's clean virtual environment does (issue 21): a venv without the system site-packages, the
    wheel, and the distributions its requirements bring in, nothing else. (A ``--system-site-packages`` venv
    sees the base interpreter's packages instead: in a clean venv the base has no torch, in CI it has everything;
    the test proved neither.)"""
    (tmp_path / "src").mkdir()
    src = _source_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *_isolation_flags(), "-q", "-w",
                            str(wheels), str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = wheels.glob("pix2pix_tr-*.whl")
    requirements = _requirements_of(wheel)
    assert any(r.startswith("torch") for r in requirements), requirements
    venv = tmp_path / "venv"
    python = _clean_venv_with(venv, _dependency_closure(requirements))
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, text=True, timeout=300)
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert not [line for line in check.stdout.splitlines() if line.lower().startswith("pix2pix-tr")], check.stdout
    # what is installed here but not required by the package stays invisible, as in a user's clean venv
    assert subprocess.run([str(python), "-c", "import pytest"], capture_output=True, timeout=300).returncode != 0
    for command in COMMANDS:
        assert (venv / "bin" / command).is_file(), f"{command} was not installed"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    where = subprocess.run([str(python), "-c", "import pix2pix_tr.demo, evaluation, sys; "
                            "print(pix2pix_tr.demo.__file__); print(pix2pix_tr.demo.ROOT); "
                            "print(any('site-packages' in p and not p.startswith(sys.prefix) for p in sys.path))"],
                           cwd=outside, env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    assert str(venv) in where[0] and where[1] == "None", where  # the wheel's copy, not the checkout's
    assert where[2] == "False", where  # no site-packages of another environment on the path

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
