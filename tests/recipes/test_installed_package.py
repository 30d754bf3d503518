"""The quickstart's recipe works from a built package, not only from a checkout: its text and
configs travel as package data, and nothing reads the repository's layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from megacpt.recipes import corpora

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json
from megacpt.recipes import corpora, quickstart
files = [p for lang in corpora.LANGS for p in corpora.bundled_files(lang)]
configs = [quickstart.Budget(base).config for base in quickstart.BASES] + ["base_en.yaml"]
files += [corpora.EXAMPLES / "quickstart" / name for name in configs]
print(json.dumps({
    "package": quickstart.__file__,
    "missing": [str(p) for p in files if not p.is_file()],
    "documents": {lang: len(corpora.training_documents(lang)) for lang in corpora.LANGS},
}))
"""


def test_the_quickstart_finds_its_text_and_configs_in_a_built_package(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert not (lib / "megacpt" / "recipes" / "examples").is_symlink()  # copied, not linked
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(lib)},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    found = json.loads(done.stdout.splitlines()[-1])
    assert Path(found["package"]).is_relative_to(lib)  # the built copy, not this checkout
    assert found["missing"] == []
    assert found["documents"] == {lang: len(corpora.training_documents(lang)) for lang in corpora.LANGS}
