"""Every DVC stage depends on every source module its command runs.

The import closure of a stage is computed from the code: the `brainseg` console script
(`brainseg.cli`), the module `cli.COMMANDS` maps the stage's command to, and every
`brainseg.*` module they import, followed statically (imports inside functions too),
with the `__init__.py` of each package on the way (importing a module runs them). A
module of the closure that no dep of the stage covers (a dep folder covers everything
under it) would let `dvc repro` call stale results up to date.

The Snakemake rules list no source files as inputs (Snakemake reruns a job when its
inputs, params or shell command change), so there is nothing to check there.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

from brainseg.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
ENTRY = "brainseg.cli"  # what the `brainseg` console script runs before the stage's module


def module_file(name: str, src: Path = SRC) -> Path | None:
    """The file of module or package `name` under `src`, or None (a name inside a module)."""
    base = src.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def imported_names(path: Path, module: str) -> set[str]:
    """Dotted names of the `brainseg` modules (and candidates) that `path` imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, `level - 1` steps up
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule?
    return {n for n in names if n == "brainseg" or n.startswith("brainseg.")}


def import_closure(*roots: str, src: Path = SRC) -> set[Path]:
    """Files of every `brainseg` module that importing `roots` may run."""
    files: set[Path] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for n in range(1, len(parts) + 1):  # the packages on the way run first
            prefix = ".".join(parts[:n])
            path = module_file(prefix, src)
            if path is not None and path not in files:
                files.add(path)
                todo.extend(imported_names(path, prefix))
    return files


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def stage_command(cmd: str) -> str:
    """The `brainseg` subcommand of a stage's `cmd`."""
    words = shlex.split(cmd)
    assert words[0] == "brainseg", f"not a brainseg command: {cmd}"
    return next(w for w in words[1:] if w in COMMANDS)


def stages() -> dict[str, dict]:
    """The stages of dvc.yaml; a `foreach` stage as its `do` body (one per item)."""
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in declared.items()}


def source_deps(stage: dict) -> list[str]:
    return [d for d in stage.get("deps", []) if d.startswith("src/")]


def stage_closure(stage: dict) -> list[str]:
    """Repository paths of the files the stage's command runs, sorted."""
    closure = import_closure(ENTRY, COMMANDS[stage_command(stage["cmd"])][0])
    return sorted(p.relative_to(REPO).as_posix() for p in closure)


def missing_deps(stage: dict) -> list[str]:
    """Closure files of the stage's command that its deps do not cover."""
    return [p for p in stage_closure(stage) if not covered(p, source_deps(stage))]


def suggested_deps(stage: dict) -> list[str]:
    """The closure as deps: a package folder when the stage runs all of it, else its files."""
    files = set(stage_closure(stage))

    def whole(folder: Path) -> bool:
        return all(p.relative_to(REPO).as_posix() in files for p in folder.rglob("*.py"))

    deps: set[str] = set()
    for path in files:
        folder = (REPO / path).parent
        top = None
        while folder != SRC / "brainseg" and whole(folder):  # the largest package fully run
            top, folder = folder, folder.parent
        deps.add(top.relative_to(REPO).as_posix() if top else path)
    return sorted(deps)


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_cover_every_module_its_command_imports(name):
    stage = stages()[name]
    missing = missing_deps(stage)
    assert not missing, (
        f"dvc.yaml stage '{name}' lacks deps on the modules it runs: {missing}; "
        f"source deps that cover its import closure: {suggested_deps(stage)}")


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_source_dep_exists_and_is_imported(name):
    """A dep left behind by a move or a removed import makes DVC rerun for nothing (or fail)."""
    stage = stages()[name]
    closure = {p.relative_to(REPO).as_posix()
               for p in import_closure(ENTRY, COMMANDS[stage_command(stage["cmd"])][0])}
    for dep in source_deps(stage):
        assert (REPO / dep).exists(), f"dvc.yaml stage '{name}': dep {dep} does not exist"
        assert any(covered(p, [dep]) for p in closure), (
            f"dvc.yaml stage '{name}': dep {dep} holds no module that the stage imports")


def test_closure_follows_function_level_relative_and_package_imports(tmp_path):
    files = {
        "brainseg/__init__.py": "",
        "brainseg/a/__init__.py": "from brainseg.a import b\n",
        "brainseg/a/b.py": "def f():\n    from brainseg.c.d import g\n",
        "brainseg/c/__init__.py": "",
        "brainseg/c/d.py": "from . import e\nfrom .f import h\n",
        "brainseg/c/e.py": "import numpy\n",
        "brainseg/c/f.py": "h = 1\n",
        "brainseg/c/unused.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    closure = import_closure("brainseg.a.b", src=tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in closure} == set(files) - {
        "brainseg/c/unused.py"}


def test_a_removed_dep_is_reported():
    stage = dict(stages()["evaluate"])
    removed = "src/brainseg/models"
    assert removed in stage["deps"]
    stage["deps"] = [d for d in stage["deps"] if d != removed]
    assert any(p.startswith(removed + "/") for p in missing_deps(stage))


def rewrite_dvc_yaml(path: Path = REPO / "dvc.yaml") -> list[str]:
    """Replace every stage's source deps in dvc.yaml by `suggested_deps` (text kept as is
    otherwise); returns the stages changed. Run `python -m tests.test_dvc_deps`."""
    lines = path.read_text().splitlines(keepends=True)
    changed = []
    for name, stage in stages().items():
        start = next(i for i, line in enumerate(lines)
                     if line.split("#")[0].rstrip() == f"  {name}:")
        deps_at = next(i for i in range(start, len(lines)) if lines[i].strip() == "deps:")
        item = " " * (len(lines[deps_at]) - len(lines[deps_at].lstrip()) + 2) + "- "
        end = deps_at + 1
        while end < len(lines) and lines[end].startswith(item):
            end += 1
        data = [ln for ln in lines[deps_at + 1:end] if not ln.strip().startswith("- src/")]
        src = [f"{item}{d}\n" for d in suggested_deps(stage)]
        if data + src != lines[deps_at + 1:end]:
            changed.append(name)
        lines[deps_at + 1:end] = data + src
    path.write_text("".join(lines))
    return changed


if __name__ == "__main__":
    print("rewrote the deps of:", ", ".join(rewrite_dvc_yaml()) or "nothing")
