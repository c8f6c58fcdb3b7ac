"""The one import root: listener/, models/ and db/ install as ichvol.listener, ichvol.models, ichvol.db."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = {"ichvol": "ichvol", "listener": "ichvol.listener", "models": "ichvol.models", "db": "ichvol.db"}


def _declared_packages() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return set(tomllib.load(f)["tool"]["setuptools"]["packages"])


def _packages_on_disk() -> set[str]:
    found = set()
    for folder, dotted in COMPONENTS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([dotted, *rel.parts]))
    return found


def test_every_package_is_declared():
    missing = _packages_on_disk() - _declared_packages()
    assert not missing, f"add these packages to pyproject.toml [tool.setuptools] packages: {sorted(missing)}"


def test_installed_import_root_from_elsewhere(tmp_path):
    code = "import ichvol.listener, ichvol.models, ichvol.db, ichvol.cli; print(ichvol.models.__name__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ichvol.models"


def test_no_top_level_generic_packages(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import models"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode != 0, "a top-level `models` package leaked into site-packages"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("ichvol-*.whl")
    return path


def test_wheel_maps_components_under_ichvol(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for dotted in _declared_packages():
        assert dotted.replace(".", "/") + "/__init__.py" in names, dotted
    assert not any(n.startswith(("listener/", "models/", "db/")) for n in names)
    assert any(n.startswith("ichvol/db/migrations/") and n.endswith(".py") for n in names)


def test_wheel_imports_without_the_source_tree(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "site")
    code = "import ichvol.listener, ichvol.models, ichvol.db; import ichvol; print(ichvol.__file__)"
    prelude = f"import sys; sys.path[:0] = [{str(tmp_path / 'site')!r}]; "
    out = subprocess.run([sys.executable, "-S", "-c", prelude + code], cwd=tmp_path, capture_output=True, text=True)
    # -S drops site-packages, so only the import check of our own modules matters: third-party imports
    # inside package __init__ files would fail here, which is why those stay light.
    assert out.returncode == 0, out.stderr
    assert str(tmp_path / "site") in out.stdout
