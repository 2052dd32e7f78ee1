"""No job package imports another: what they share lives in the `ehrforge` package (STYLE.md)."""

import ast

import pytest

from ehrforge.paths import REPO_ROOT

JOBS = ("synthesis", "training", "evaluation", "expectations", "meds_export")


def _imported_packages(path):
    """Top-level packages a module imports anywhere (module level or inside functions)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("job", JOBS)
def test_no_job_package_imports_another(job):
    crossings = sorted(
        f"{path.relative_to(REPO_ROOT)} imports {pkg}"
        for path in (REPO_ROOT / job).rglob("*.py")
        for pkg in set(_imported_packages(path))
        if pkg in JOBS and pkg != job
    )
    assert not crossings, "move what they share into ehrforge/: " + "; ".join(crossings)


def test_the_shared_package_imports_no_job():
    crossings = sorted(
        f"{path.relative_to(REPO_ROOT)} imports {pkg}"
        for path in (REPO_ROOT / "ehrforge").rglob("*.py")
        for pkg in set(_imported_packages(path))
        if pkg in JOBS
    )
    assert not crossings, "; ".join(crossings)
