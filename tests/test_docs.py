"""The documentation covers the package and stays inside the repository.

Every public class and function is in the API reference (`docs/api/*.md`): the
names each sub-package exports (its `__all__`, else every public name its
`__init__` binds, lazy ones included), and the public classes and functions of
the package's plain modules (and of the modules of a sub-package that exports
nothing, `ops`). Both sides are read from the source with `ast`, without
importing TensorFlow, so the check is cheap. Where `.ci/run` has built the site
it passes the directory in `KERAS_HYPERBOLIC_DOCS_SITE`, and the check also
finds each name's anchor in the built HTML (what mkdocstrings rendered).
"""

import ast
import functools
import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "keras_hyperbolic"
DOCS = ROOT / "docs"
#: The command's module: its interface is `keras-hyperbolic --help`, not an API.
NOT_API = {f"{PACKAGE}.cli"}
SITE_VARIABLE = "KERAS_HYPERBOLIC_DOCS_SITE"


# === The package, read statically ===


def source_file(module):
    """The file of a dotted module name, or None when it is not a module of the package."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    path = ROOT.joinpath(*parts)
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def is_package(module):
    path = source_file(module)
    return path is not None and path.name == "__init__.py"


@functools.lru_cache(maxsize=None)
def tree(module):
    return ast.parse(source_file(module).read_text(encoding="utf-8"))


def _absolute(module, node):
    """The module an `ImportFrom` node imports from, relative imports resolved."""
    if not node.level:
        return node.module
    base = module.split(".")
    base = base if is_package(module) else base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _assigned_names(node):
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = []
    for target in targets:
        elements = target.elts if isinstance(target, ast.Tuple) else [target]
        names += [e.id for e in elements if isinstance(e, ast.Name)]
    return names


def _made_by_call(node):
    """True for `... = f(...)` where `f` makes classes (`rank_classes`)."""
    call = node.value if isinstance(node.value, ast.Call) else None
    function = getattr(call, "func", None)
    return getattr(function, "id", getattr(function, "attr", None)) == "rank_classes"


@functools.lru_cache(maxsize=None)
def definitions(module):
    """`{name: kind}` for what `module` defines at its top level: class, function or constant."""
    kinds = {}
    for node in tree(module).body:
        if isinstance(node, ast.ClassDef):
            kinds[node.name] = "class"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            kinds[node.name] = "function"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and getattr(node, "value", None):
            kind = "class" if _made_by_call(node) else "constant"
            kinds.update({name: kind for name in _assigned_names(node)})
    return kinds


@functools.lru_cache(maxsize=None)
def bindings(module):
    """`{name: (defining module, name)}` for the package objects `module` imports by name.

    Sub-modules and third-party imports are left out; so is what `from x import *`
    brings in (see `exports`). Imports inside a module-level `__getattr__` count:
    they are the module's lazy attributes.
    """
    found = {}
    statements = list(tree(module).body)
    for node in tree(module).body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            statements += [n for n in ast.walk(node) if isinstance(n, ast.ImportFrom)]
    for node in statements:
        if not isinstance(node, ast.ImportFrom):
            continue
        origin = _absolute(module, node)
        if source_file(origin) is None:
            continue
        for alias in node.names:
            if alias.name == "*":
                for name in exports(origin):
                    found[name] = canonical(origin, name)
            elif source_file(f"{origin}.{alias.name}") is None:  # not a sub-module
                found[alias.asname or alias.name] = canonical(origin, alias.name)
    return found


def canonical(module, name):
    """`(module, name)` of where `name`, as seen from `module`, is defined."""
    if name in definitions(module):
        return module, name
    if name in bindings(module):
        return bindings(module)[name]
    if is_package(module):  # a lazy export (module `__getattr__`): defined in one of its modules
        for sub in modules_of(module):
            if not is_package(sub) and name in definitions(sub):
                return sub, name
    raise LookupError(f"{module} has no attribute {name!r} (read from its source)")


def dunder_all(module):
    for node in tree(module).body:
        if isinstance(node, ast.Assign) and "__all__" in _assigned_names(node):
            return list(ast.literal_eval(node.value))
    return None


def exports(module):
    """The names a package exports: its `__all__`, else every public name it binds."""
    names = dunder_all(module)
    if names is None:
        names = list(definitions(module)) + list(bindings(module))
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


def public_definitions(module):
    return [n for n, kind in definitions(module).items() if not n.startswith("_")
            and kind in ("class", "function")]


def modules_of(package):
    """Dotted names of the modules and sub-packages directly inside `package`."""
    directory = source_file(package).parent
    names = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("_"):
            continue
        if path.suffix == ".py" or (path / "__init__.py").is_file():
            names.append(f"{package}.{path.stem}")
    return names


def required_api():
    """`{(module, name): where it is public}` for every public class and function."""
    required = {}

    def visit(module):
        if module in NOT_API:
            return
        if not is_package(module):
            for name in public_definitions(module):
                required[(module, name)] = module
            return
        names = exports(module)
        for name in names:
            origin = canonical(module, name)
            if definitions(origin[0]).get(origin[1]) in ("class", "function"):
                required.setdefault(origin, f"{module}.{name}")
        for sub in modules_of(module):
            # The package's plain modules, and those of a sub-package that exports
            # nothing (`ops`, a namespace of modules), are public themselves.
            if is_package(sub) or not names or module == PACKAGE:
                visit(sub)

    visit(PACKAGE)
    return required


# === The API reference, read statically ===


def injections(pages):
    """`[(page, identifier, options text)]` for every `::: identifier` block of `pages`."""
    found = []
    for page in pages:
        lines = page.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            match = re.match(r"^:::\s+(\S+)\s*$", line)
            if not match:
                continue
            options = []
            for following in lines[index + 1:]:
                if following.strip() and not following.startswith(" "):
                    break
                options.append(following)
            found.append((page, match.group(1), "\n".join(options)))
    return found


def rendered_by(identifier):
    """`{(module, name): anchor id}` for what `::: identifier` renders (griffe, static reading).

    A module renders what it defines; a module with `__all__` renders those
    names that its source binds (a lazy export, served by `__getattr__`, is not
    seen by griffe: its own page entry renders it); an object path renders that object.
    """
    if source_file(identifier) is not None:
        names = dunder_all(identifier)
        if names is not None:
            names = [n for n in names
                     if n in definitions(identifier) or n in bindings(identifier)]
        else:
            names = [n for n in definitions(identifier) if not n.startswith("_")]
        return {canonical(identifier, n): f"{identifier}.{n}" for n in names}
    module, _, name = identifier.rpartition(".")
    if source_file(module) is None:
        raise LookupError(f"{identifier}: {module} is not a module of the package")
    return {canonical(module, name): identifier}


def documented(pages):
    found = {}
    for page, identifier, options in injections(pages):
        if re.search(r"^\s+members\s*:", options, re.M):
            raise ValueError(f"{page.name}: `::: {identifier}` narrows `members`, which this "
                             "check does not read; inject each object with its own `:::` line")
        for key, anchor in rendered_by(identifier).items():
            found.setdefault(key, []).append((page, anchor))
    return found


def api_pages():
    return sorted((DOCS / "api").glob("*.md"))


def missing_from(required, found):
    return sorted(f"{where} ({module}.{name})" for (module, name), where in required.items()
                  if (module, name) not in found)


# === Tests ===


def test_the_package_has_a_public_api_to_document():
    required = required_api()
    # Spot checks that the static reading sees exports of each kind: a name imported by
    # `__init__`, one brought in by `import *` and made by `rank_classes`, a lazy one,
    # a plain module's function, and a function of `ops` (a package of modules).
    for module, name in [("keras_hyperbolic.reversible.sequence", "ReversibleSequence"),
                         ("keras_hyperbolic.layers.pooling.wavelet_pooling", "WaveletPooling3D"),
                         ("keras_hyperbolic.profiling", "training_step_estimate"),
                         ("keras_hyperbolic.ops.wavelets", "dwt")]:
        assert (module, name) in required
    assert any(name == "segment_video" for _, name in required)
    assert not any(module in NOT_API for module, _ in required)


def test_every_api_reference_entry_names_an_existing_object():
    for page, identifier, _ in injections(api_pages()):
        try:
            rendered_by(identifier)
        except LookupError as error:
            pytest.fail(f"docs/api/{page.name}: `::: {identifier}`: {error}")


def test_every_public_class_and_function_is_in_the_api_reference():
    required = required_api()
    found = documented(api_pages())
    missing = missing_from(required, found)
    assert not missing, "not in docs/api/*.md: " + ", ".join(missing)
    site = os.environ.get(SITE_VARIABLE)
    if site:  # the built site too: an anchor per name, where mkdocstrings rendered it
        html = "\n".join(p.read_text(encoding="utf-8") for p in pathlib.Path(site, "api").rglob("*.html"))
        absent = sorted({anchor for key in required for _, anchor in found[key]
                         if f'id="{anchor}"' not in html})
        assert not absent, f"in docs/api but not rendered in {site}: " + ", ".join(absent)


def test_the_coverage_check_reports_a_page_left_out():
    pages = [p for p in api_pages() if p.name != "layers.md"]
    missing = missing_from(required_api(), documented(pages))
    assert "keras_hyperbolic.layers.HyperbolicBlock (keras_hyperbolic.layers.hyperbolic_block.HyperbolicBlock)" in missing
    assert any("WaveletPooling2D" in entry for entry in missing)


# Built from pieces so that this file does not match what it looks for.
OUTSIDE_POINTERS = re.compile("|".join(["DESIGN" + r"\.md", "STYLE" + r"\.md", r"\.\./" + "shared"]))


def test_nothing_points_outside_the_repository():
    files = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "mkdocs.yml"]
    for folder in ("keras_hyperbolic", "benchmarks", "examples", "tests", "docs"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md")]
    hits = [f"{path.relative_to(ROOT)}:{number}"
            for path in files
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if OUTSIDE_POINTERS.search(line)]
    assert not hits, "pointers to files outside the repository: " + ", ".join(hits)


def test_readme_links_resolve_and_it_stays_short():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README.md links to {target}, which is not in the repository"
    # CI runs the README's test command (.ci/run).
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m pytest -q -n 2" in readme and "python -m pytest -q -n 2\n" in ci


def _table_lines():
    for page in sorted(DOCS.rglob("*.md")):
        yield page, page.read_text(encoding="utf-8").splitlines()


def test_tables_cite_tests_that_exist():
    # `file.py::test` cells; a bare `::test` means the file last named in the same table.
    sources = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py")}
    wrong = []
    for page, lines in _table_lines():
        current = None
        for line in lines:
            if not line.startswith("|"):
                current = None
                continue
            for match in re.finditer(r"(test_\w+\.py)?::(\w+)", line):
                current = match.group(1) or current
                source = sources.get(current, "")
                if not re.search(rf"^def {match.group(2)}\b", source, re.M):
                    wrong.append(f"{page.name}: {current}::{match.group(2)}")
    assert not wrong, "tests cited in docs/ that do not exist: " + ", ".join(wrong)


def _package_file(path):
    for candidate in (ROOT / PACKAGE / path, ROOT / path):
        if candidate.is_file():
            return candidate
    found = list((ROOT / PACKAGE).rglob(path))
    return found[0] if len(found) == 1 else None


def test_code_cited_by_path_is_defined_there():
    # "`layers/hyperbolic_block.py` `HyperbolicBlock.call`": the file exists and defines the
    # name (a class, function, method, rank class or preset key), so moved code fails here.
    wrong = []
    for page, lines in _table_lines():
        for line in lines:
            for match in re.finditer(r"`((?:[a-z_]+/)*[a-z_0-9]+\.py)` `([A-Za-z_][\w.]*)`", line):
                path, name = match.groups()
                source = _package_file(path)
                top = name.split(".")[0]
                pattern = rf"^\s*(class|def) {top}\b|\b{top}\b[^=\n]*= rank_classes|\"{top}\":"
                if source is None or not re.search(pattern, source.read_text(encoding="utf-8"), re.M):
                    wrong.append(f"{page.name}: `{path}` `{name}`")
    assert not wrong, "code cited in docs/ that is not where it says: " + ", ".join(wrong)
