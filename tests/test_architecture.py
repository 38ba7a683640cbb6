"""The package's shape, checked from its source: a torch-free core that imports without any environment switch, no
import cycle among its modules (lazy, function-level imports included), and no private name used across modules."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "interlace_hf"


def test_the_core_imports_without_torch():
    """What the pure core needs: no torch, no environment variable; and `import interlace_hf` registers nothing."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import interlace_hf, interlace_hf.selection, interlace_hf.plan, interlace_hf.card, interlace_hf.layermap\n"
            "import interlace_hf.args, interlace_hf.planning, interlace_hf.benchmark.flops, interlace_hf.utils.fileio\n"
            "import interlace_hf.tables, interlace_hf.checkpoint, interlace_hf.hub, interlace_hf.datasets.prepare\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    code = ("import sys, interlace_hf, interlace_hf.selection, interlace_hf.card\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""})
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path, modules: dict) -> list[tuple[str, list[str], int]]:
    """(module imported, names imported, line) for every `interlace_hf` import in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    tree = ast.parse(path.read_text())
    # An `if __name__ == "__main__":` block runs only when the file is executed as a script (`python -m`), never
    # on import: what it imports is an entry point, not a dependency of the module.
    tree.body = [node for node in tree.body if not (isinstance(node, ast.If) and "__main__" in ast.unparse(node.test))]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("interlace_hf"):
                found.append((target, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("interlace_hf")]
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target, names, _ in _imports(name, path, modules):
            for candidate in [target, *(f"{target}.{n}" for n in names)]:
                # importing a submodule runs its package's __init__ too: a module's own parents are not edges
                if candidate in modules and candidate != name and not name.startswith(candidate + "."):
                    edges.add(candidate)
        graph[name] = edges
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_name_is_imported_across_modules():
    modules = _modules()
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {n} from {target}"
                 for name, path in modules.items() for target, names, line in _imports(name, path, modules)
                 for n in names if n.startswith("_") and not n.startswith("__")]
    assert not offenders, offenders


def test_every_flag_takes_dashes_or_underscores():
    """One convention for users, the ecosystem's: HfArgumentParser (TRL, `interlace-hf train`) accepts `--drop_ratio`
    and `--drop-ratio`; so does every other command."""
    from interlace_hf.commands.cli import build_parser

    parser = build_parser()
    dashed = parser.parse_args(["prune", "M", "--drop-layers", "3", "--output-dir", "o", "--sample-fraction", "0.5"])
    underscored = parser.parse_args(["prune", "M", "--drop_layers", "3", "--output_dir", "o", "--sample_fraction",
                                     "0.5"])
    assert vars(dashed) == vars(underscored)
    run = parser.parse_args(["run", "--config", "r.yaml", "--output_dir", "x"])
    assert run.output_dir == "x"
    from interlace_hf.train import parse_train_args

    one = parse_train_args(["--model", "m", "--dataset", "d", "--learning-rate", "2e-5", "--max_steps", "3"])[1]
    assert one.learning_rate == 2e-5 and one.max_steps == 3


def test_docs_architecture_names_every_module():
    """docs/architecture.md is the map of the package: a module added without a place on it fails here."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = []
    for name in _modules():
        parts = name.split(".")[1:]
        if not parts or parts[-1] == "__main__":
            continue
        if len(parts) == 1:
            wanted = f"`{parts[0]}.py`" if (PACKAGE / f"{parts[0]}.py").is_file() else f"`{parts[0]}/`"
        else:
            wanted = f"`{parts[-1]}`" if parts[0] != "modeling" else "`modeling/`"
        if wanted not in doc:
            missing.append(name)
    assert not missing, f"modules missing from docs/architecture.md: {missing}"
