"""The built wheel (what `pip install pytest-minigram` gets): entry points and package data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA_FOLDERS = ("pytest_minigram/report/templates", "pytest_minigram/report/vendor",
                "minigram/migrations", "minigram/static")


def test_wheel_registers_the_plugin_and_ships_its_data(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, timeout=300,
                   capture_output=True)
    (wheel,) = tmp_path.glob("pytest_minigram-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    assert "[pytest11]\nminigram = pytest_minigram.plugin" in entry_points
    assert "minigram = minigram.cli:main" in entry_points
    shipped = {str(p.relative_to(ROOT)) for folder in DATA_FOLDERS
               for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert shipped and shipped <= names, sorted(shipped - names)
    assert any(n.startswith("pytest_minigram/report/vendor/") and n.endswith(".js")
               for n in names)
    assert any(n.startswith("minigram/migrations/versions/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
