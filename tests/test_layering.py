"""Layering rules the import graph does not show (`lint-imports` checks the graph's contracts in
`make test`): no module uses another module's private names, and every package is under contract."""

import ast
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# the packages setuptools ships (packages.find's include patterns, "name*")
SOURCE_PACKAGES = tuple(pattern.rstrip("*") for pattern
                        in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"])

# Private names still imported on purpose, each with the change that removes it. An entry that no
# longer matches fails the test, so the list cannot outlive its reason.
ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dotted(node: ast.AST) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None for anything that is not a plain name chain."""
    chain = []
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id] + chain[::-1]


def private_uses(path: pathlib.Path) -> set[tuple[str, str]]:
    """(this module, `other.module._name`) for every private name of another project module this
    module imports (`from m import _x`) or reads through a module it imported (`m._x`)."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    aliases: dict[str, str] = {}  # local name -> project module it is bound to
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, path.name == "__init__.py", node)
            if source.split(".")[0] not in SOURCE_PACKAGES:
                continue
            for alias in node.names:
                if _is_private(alias.name) and source != module:
                    found.add((module, f"{source}.{alias.name}"))
                if _is_module(f"{source}.{alias.name}"):
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in SOURCE_PACKAGES:
                    bound = alias.asname or alias.name.split(".")[0]
                    aliases[bound] = alias.name if alias.asname else bound
    for node in ast.walk(tree):
        chain = _dotted(node) if isinstance(node, ast.Attribute) else None
        if not chain or chain[0] not in aliases:
            continue
        target = aliases[chain[0]]
        rest = chain[1:]
        while rest and _is_module(f"{target}.{rest[0]}"):
            target, rest = f"{target}.{rest[0]}", rest[1:]
        if rest and _is_private(rest[0]) and target != module:
            found.add((module, f"{target}.{rest[0]}"))
    return found


def _source_files():
    for package in SOURCE_PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_module_uses_a_private_name_of_another():
    uses = set().union(*(private_uses(p) for p in _source_files()))
    unexpected = sorted(uses - ALLOWED)
    assert not unexpected, "private names used across modules (make them public, or move the " \
        "helper where both can import it): " + "; ".join(f"{m} uses {n}" for m, n in unexpected)
    stale = sorted(ALLOWED - uses)
    assert not stale, f"no longer used, drop from ALLOWED: {stale}"


def test_the_walk_sees_each_form_of_private_use(tmp_path, monkeypatch):
    """The three spellings the review found (`from m import _x`, `pkg._X` through a module imported
    by `from pkg import mod`, and `import a.b as m; m._x`) are each reported."""
    package = tmp_path / "passes"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "lib.py").write_text("def _helper():\n    pass\n")
    (package / "user.py").write_text(
        "from passes.lib import _helper\n"
        "from passes import lib\n"
        "import passes.lib as plib\n"
        "from . import lib as rel\n"
        "lib._one()\nplib._two\nrel._three\nlib.__name__\nlib.public\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert private_uses(package / "user.py") == {
        ("passes.user", "passes.lib._helper"), ("passes.user", "passes.lib._one"),
        ("passes.user", "passes.lib._two"), ("passes.user", "passes.lib._three")}


def test_every_shipped_package_is_under_the_import_contracts():
    """A package missing from import-linter's root packages is not checked at all (its imports
    count as external): a new package must join the contracts when it joins packages.find."""
    linter = PYPROJECT["tool"]["importlinter"]
    assert sorted(linter["root_packages"]) == sorted(SOURCE_PACKAGES)
    layered = {name.strip(" ()") for contract in linter["contracts"] if contract["type"] == "layers"
               for layer in contract["layers"] for name in re.split(r"[|:]", layer)}
    acyclic = {name for contract in linter["contracts"] if contract["type"] == "acyclic_siblings"
               for name in contract["ancestors"]}
    assert set(SOURCE_PACKAGES) <= layered and set(SOURCE_PACKAGES) <= acyclic
    forbidden = {c["name"]: c for c in linter["contracts"] if c["type"] == "forbidden"}
    drivers = forbidden["Nothing imports the driver or the service (the service runs the "
                        "driver's commands)"]
    assert set(drivers["source_modules"]) == set(SOURCE_PACKAGES) - {"alohac", "service"}
    assert set(drivers["forbidden_modules"]) == {"alohac", "service"}
    assert set(forbidden["The IR and the architecture language import no other project package"][
        "forbidden_modules"]) == set(SOURCE_PACKAGES) - {"aloha_ir", "archdesc", "aloha_errors"}
