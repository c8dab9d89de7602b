"""The packages import each other in one direction only (the README's "Dependencies")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "billing", "services", "webhooks", "campaigns", "dialer", "api", "console", "dashboard")
# what each package may import from the product, besides itself
ALLOWED = {
    "core": set(),
    "billing": {"core"},
    "services": {"core", "billing", "campaigns"},
    "webhooks": {"core", "billing", "services"},
    "campaigns": {"core"},
    "dialer": {"core", "billing"},
    "dashboard": {"core"},
    "api": {"core", "billing", "services", "webhooks", "campaigns", "console"},  # create_app mounts the console
    "console": {"core", "billing", "services", "webhooks"},
}


def imports_of(path: Path) -> set[str]:
    """The top-level packages a module imports (absolute imports, also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", PRODUCT)
def test_imports_follow_the_arrows(package: str) -> None:
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = (imports_of(path) & set(PRODUCT)) - ALLOWED[package] - {package}
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert wrong == {}, f"imports against the dependency direction: {wrong}"


def test_the_test_kit_is_never_imported_by_the_product() -> None:
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            kit = {"simulator", "tests", "bench"} & imports_of(path)
            assert not kit, f"{path.relative_to(ROOT)} imports {kit}"


def test_http_resources_import_no_other_resource() -> None:
    """What two resources share lives in a service (or api's own modules), never in a resource."""
    wrong = {}
    for path in sorted((ROOT / "api" / "resources").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.startswith("api.resources") for name in names):
                wrong[path.name] = names
    assert wrong == {}
