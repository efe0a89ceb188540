"""The layering rules of ARCHITECTURE.md, checked on the source: no import cycles among brainclf's modules
(top-level and function-level imports alike), brainclf never imports Streamlit, no module over 300 lines
unless listed below with a reason, function-level imports only of the heavy libraries whose import time they
save, and `python -m brainclf --help` never imports TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "brainclf"
MAX_LINES = 300

# Modules allowed over MAX_LINES, each with why.
LONG_MODULES: dict[str, str] = {}

# What a function may import inside its body: libraries whose import costs seconds (TensorFlow, Keras, JAX,
# scikit-learn, scipy), optional ones that most runs never need (pydicom, fpdf, playwright), and the
# brainclf modules that import TensorFlow at their top.
LAZY_OK = ("tensorflow", "keras", "jax", "sklearn", "scipy", "pydicom", "fpdf", "playwright",
           "brainclf.model.architectures", "brainclf.training", "brainclf.site.adapt")
# Modules exempt from that rule, each with why.
LAZY_EXEMPT = {
    "brainclf.cli": "each command imports the brainclf modules it runs: all of them cost ~1.2 s that --help and "
                    "a quick predict should not pay (see brainclf/cli/__init__.py)",
}
# Modules that may import TensorFlow/Keras when they are imported.
# Not training.config/state: below.
TF_AT_IMPORT = ("brainclf.model.architectures", "brainclf.training", "brainclf.site.adapt")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for every import that runs: `if TYPE_CHECKING:` blocks are
    skipped. Relative imports are resolved; `from pkg import mod` names the module when it is one."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[:len(package) - child.level + 1] + ([child.module] if child.module else []))
                for a in child.names:
                    full = f"{base}.{a.name}"
                    found.append((full if full in MODULES else base, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), False)
    return found


def _internal(target: str) -> str | None:
    """The brainclf module an import names (its nearest enclosing module), or None for other libraries."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _graph(function_level: bool) -> dict[str, set[str]]:
    graph = {}
    for name, imports in IMPORTS.items():
        targets = {_internal(t) for t, in_fn in imports if function_level or not in_fn}
        graph[name] = {t for t in targets if t and t != name and t != "brainclf"}  # the base package: constants
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


# The layers, lowest first (ARCHITECTURE.md draws them): a module imports only from its own layer or below. The
# base package's own modules first, then one folder per layer; the CLI (and `python -m brainclf`) on top.
LAYERS = (
    ("base", ("brainclf", "brainclf.errors", "brainclf.escaping", "brainclf.files")),
    ("input", ("brainclf.input",)),
    ("data", ("brainclf.data",)),
    ("scoring", ("brainclf.scoring",)),
    ("model", ("brainclf.model",)),
    ("inference", ("brainclf.inference",)),
    ("evaluation", ("brainclf.evaluation",)),
    ("presentation", ("brainclf.presentation",)),
    ("training", ("brainclf.training",)),
    ("site", ("brainclf.site",)),
    ("serving", ("brainclf.serving",)),
    ("cli", ("brainclf.cli", "brainclf.__main__")),
)


def _layer(module: str) -> int:
    """The index in LAYERS of the layer a module belongs to (the longest matching prefix wins: the base package
    `brainclf` itself only holds constants)."""
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or (p != "brainclf" and module.startswith(p + "."))) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    assert best is not None, f"{module} is in no layer of LAYERS: add its folder there (and to ARCHITECTURE.md)"
    return best[0]


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
                  for m, targets in graph.items() for t in targets if _layer(t) > _layer(m))


def test_every_module_imports_only_its_own_layer_or_below():
    assert _upward(_graph(function_level=True)) == []


def test_the_layer_check_finds_an_upward_import():
    assert _upward({"brainclf.input.preprocess": {"brainclf.inference.predict"}, "brainclf.cli": {"brainclf.errors"}}) \
        == ["brainclf.input.preprocess (input) imports brainclf.inference.predict (inference)"]


def test_the_layers_are_the_package_folders():
    """`ls brainclf` and LAYERS name the same folders, so the diagram in ARCHITECTURE.md can be checked by eye."""
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    declared = {p.split(".")[1] for _, prefixes in LAYERS for p in prefixes if p.count(".") == 1}
    assert folders == declared - {"errors", "escaping", "files", "__main__"}
    for module in MODULES:
        _layer(module)


def test_the_package_imports_nothing_circular():
    assert _cycles(_graph(function_level=True)) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_brainclf_never_imports_streamlit():
    offenders = [f"{name} imports {t}" for name, imports in IMPORTS.items() for t, _ in imports
                 if t == "streamlit" or t.startswith("streamlit.")]
    assert offenders == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_length(name):
    rel = MODULES[name].relative_to(REPO).as_posix()
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES or rel in LONG_MODULES, (
        f"{rel} has {lines} lines (> {MAX_LINES}): split it where it has a seam, or list it in LONG_MODULES with why")


@pytest.mark.parametrize("path", [REPO / "app.py", *sorted((REPO / "pages").rglob("*.py"))], ids=lambda p: p.name)
def test_page_module_length(path):
    """The app's pages hold to the same length: a page's section that outgrows it moves to a module beside it."""
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines (> {MAX_LINES}): move a section out"


def test_function_level_imports_only_save_start_up_time():
    offenders = [f"{name}: {t}" for name, imports in IMPORTS.items() if not _under(name, LAZY_EXEMPT)
                 for t, in_fn in imports if in_fn and not _under(t, LAZY_OK)]
    assert offenders == [], ("import these at the top of the module (a function-level import is for heavy "
                             "libraries only, see ARCHITECTURE.md)")


def test_only_the_training_modules_import_tensorflow_when_imported():
    graph = _graph(function_level=False)
    direct = {name for name, imports in IMPORTS.items()
              if any(_under(t, ("tensorflow", "keras")) for t, in_fn in imports if not in_fn)}
    loads_tf = set(direct)
    while True:
        more = {name for name, deps in graph.items() if deps & loads_tf} - loads_tf
        if not more:
            break
        loads_tf |= more
    assert sorted(n for n in loads_tf if not _under(n, TF_AT_IMPORT)) == []


def _heavy_modules_after(statement: str) -> list[str]:
    """Which of TensorFlow, Keras and scikit-learn a fresh interpreter has loaded after `statement`."""
    code = f"import sys; {statement}; print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return ast.literal_eval(r.stdout.strip())


def test_cli_help_does_not_import_tensorflow():
    assert _heavy_modules_after("from brainclf.cli import build_parser; build_parser().format_help()") == []


def _page_imports(page: str) -> list[str]:
    """The brainclf and pages modules a page file imports at its top."""
    tree = ast.parse((REPO / "pages" / f"{page}.py").read_text(encoding="utf-8"))
    return sorted({n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module
                   and n.module.split(".")[0] in ("brainclf", "pages")})


def test_the_app_pages_first_paint_imports_no_tensorflow_or_scikit_learn():
    """TensorFlow loads in the model process (brainclf.inference.inference_process), and scikit-learn (~1 s) only
    where a metric is computed: what the start-up hook and the pages import must pull in neither, or the page waits for
    them (issue #14's cold start)."""
    # brainclf.scoring by name too: the pages reach it through brainclf.presentation, and it must stay light.
    modules = {"brainclf.serving.jobs", "brainclf.training.config", "brainclf.serving.warmup", "brainclf.scoring"}
    for page in ("home", "predict", "evaluation", "model"):
        modules |= set(_page_imports(page))
    assert "pages.common" in modules and "brainclf.presentation" in modules, modules  # the AST walk found them
    loaded = _heavy_modules_after("import " + ", ".join(sorted(modules)))
    assert loaded == [], loaded


def test_functions_stay_short_or_say_why():
    """Issue #15: no function over ~50 lines without a reason stated where it is defined (a comment just above
    it starting "# Over 50 lines:"), in the package, the pages and the scripts."""
    long = []
    pages = {p.relative_to(REPO).as_posix(): p for p in [REPO / "app.py", *(REPO / "pages").rglob("*.py"),
                                                         *(REPO / "scripts").glob("*.py")]}
    for name, path in {**MODULES, **pages}.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50:
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if not lines[first - 2].lstrip().startswith("# Over 50 lines:"):
                    long.append(f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def _bare_expressions(source: str) -> list[int]:
    """Lines of expressions standing alone that are not calls or docstrings: Streamlit's magic writes them."""
    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Expr)
            and not isinstance(node.value, (ast.Call, ast.Constant, ast.Await, ast.Yield, ast.YieldFrom))]


def test_pages_write_with_st_calls_only_never_by_magic():
    """`GATE.allow(...) if allowed else GATE.revoke(...)` wrote "None" above every page's title; magic is off in
    .streamlit/config.toml, and no page or app.py depends on it."""
    assert _bare_expressions("a() if x else b()\n'doc'\nf()\n") == [1]
    found = {str(f.relative_to(REPO)): lines for f in [REPO / "app.py", *sorted((REPO / "pages").glob("*.py"))]
             if (lines := _bare_expressions(f.read_text()))}
    assert found == {}
    assert "magicEnabled = false" in (REPO / ".streamlit" / "config.toml").read_text()
