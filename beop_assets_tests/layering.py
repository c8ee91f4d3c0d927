"""The import check anyone can run (`python -m beop_assets_tests.layering`, part of `make lint`).

Layers point one way. The domain packages (landing, model, delivery, exports, operations) are plain
Python: they import no Dagster, nothing of `beop_assets.defs` (every Dagster object lives there) and
not `settings` either, so that every setting is read at the edge and passed down. Among themselves:
`landing` and `delivery` stand alone, `model` reads the landing zone, `exports` builds files from
the model and names the transports' own target types, `operations` (retention, missed deliveries,
alerts, pre-flight) works over all of them. `cloud_storage` (how every GCS client is built, emulator
or Google, and what a gs:// URL means) is a foundation the others stand on.

Settings are read at the edge only: `settings.current()` may be called in the edge modules (the CLI,
the definitions that Dagster loads, the CLI's daily run, the Celery app) and nowhere else. Resources
in `defs/` hold no logic of their own: each method delegates in a few lines.

The check reads the source with `ast` (imports inside functions count too), so it needs no import
side effect and cannot be fooled by a lazy import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "beop_assets"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# What each domain package may import from the product, besides itself.
ALLOWED: dict[str, set[str]] = {
    "landing": set(),
    "delivery": set(),
    "model": {"landing"},
    "exports": {"landing", "model", "delivery"},
    "operations": {"landing", "model", "delivery", "exports"},
}
FORBIDDEN_LIBRARIES = ("dagster",)
# Foundation modules: any domain package may build on them; they import nothing of the product.
FOUNDATION = {"cloud_storage"}
# Where `settings.current()` may be called: the edge.
EDGE = {"settings.py", "cli.py", "definitions.py", "daily_run.py", "topology/celery_app.py"}
# A resource method longer than this holds logic that belongs in a plain package.
RESOURCE_METHOD_LINES = 12


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == PACKAGE:  # `from beop_assets import settings`
                found.extend((node.lineno, f"{PACKAGE}.{alias.name}") for alias in node.names)
    return found


def violations(root: Path = ROOT) -> list[str]:
    """Every import that runs against the layering, as `path:line: what`."""
    problems = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((root / layer).rglob("*.py")):
            where = path.relative_to(root.parent)
            for line, module in _imports(path):
                top = module.split(".")[0]
                if top in FORBIDDEN_LIBRARIES or module.startswith(f"{PACKAGE}.defs"):
                    problems.append(f"{where}:{line}: domain package {layer!r} imports {module}")
                    continue
                if top != PACKAGE:
                    continue
                parts = module.split(".")
                if len(parts) == 1:
                    continue  # `from beop_assets import x` is reported through x
                target = parts[1]
                if target != layer and target not in allowed and target not in FOUNDATION:
                    problems.append(
                        f"{where}:{line}: {layer!r} imports {module}; it may import only "
                        f"{sorted(allowed) or 'nothing'} of the product"
                    )
    for path in sorted(root.rglob("*.py")):
        relative = str(path.relative_to(root))
        if relative in EDGE:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "settings.current()" in line:
                problems.append(f"{path.relative_to(root.parent)}:{number}: settings read away from the edge")
    resources = root / "defs" / "resources.py"
    for node in ast.walk(ast.parse(resources.read_text() if resources.exists() else "")):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if (
                    isinstance(item, ast.FunctionDef)
                    and (item.end_lineno or 0) - item.lineno + 1 > RESOURCE_METHOD_LINES
                ):
                    problems.append(
                        f"{resources.relative_to(root.parent)}:{item.lineno}: {node.name}.{item.name} holds logic "
                        f"(over {RESOURCE_METHOD_LINES} lines): move it to a plain package"
                    )
    for name in sorted(FOUNDATION):
        path = root / f"{name}.py"
        for line, module in _imports(path):
            if module.split(".")[0] in (PACKAGE, *FORBIDDEN_LIBRARIES):
                problems.append(f"{path.relative_to(root.parent)}:{line}: foundation module imports {module}")
    return problems


def main() -> int:
    problems = violations()
    for problem in problems:
        print(problem)
    print(f"layering: {len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
