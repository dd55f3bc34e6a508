"""The documentation cannot rot: its code runs, its tables match the code, its CLI is current.

* Every ```python block of README.md and docs/**/*.md runs in a subprocess, in a temporary
  directory holding sample portraits (``me.jpg``, ``photos/*.jpg``), with
  ``IDPHOTO_BASE_URL`` pointing at a local server. Blocks that call ``anyio.run`` (without
  naming a backend) or use top-level ``await`` run on asyncio and on trio. A block that
  cannot run on its own is marked ``<!-- no-run: why -->`` on the line before it; a block
  marked ``<!-- example: NAME -->`` is run by its own test (tests/test_docs_testing.py).
  ``--8<-- "path"`` lines (pymdownx.snippets) are replaced by the file, as mkdocs does.
* The tables of docs/guides/errors.md are checked against ``TaskState`` and the error classes.
* docs/reference/cli.md is generated from the argparse parsers; regenerate it with
  ``python tests/test_docs_examples.py`` after changing a flag.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from subprocess import CompletedProcess
from typing import TYPE_CHECKING

import attrs
import pytest

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SAMPLES = ROOT / "samples"
ERRORS_GUIDE = DOCS / "guides" / "errors.md"
CLI_REFERENCE = DOCS / "reference" / "cli.md"
BLOCK_TIMEOUT = 120.0
PARALLEL_BLOCKS = 8
MAX_NO_RUN = 6
"""Fragments are the exception: at most this many blocks may be marked no-run."""

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_SNIPPET = re.compile(r"""^(?P<indent>[ \t]*)--8<--\s+["'](?P<path>[^"']+)["']\s*$""", re.MULTILINE)
_ANYIO_RUN = re.compile(r"anyio\.run\((?![^)]*backend=)")
AS_WRITTEN = "as-written"
"""A block that picks its own event loop (trio.run, asyncio.run, a backend= argument)."""
_MARKER = re.compile(r"<!--\s*(?P<kind>no-run|example)\b:?\s*(?P<why>.*?)\s*-->")


@attrs.frozen
class Block:
    """One fenced Python block of a Markdown file."""

    path: Path
    line: int
    code: str
    marker: str | None
    """``no-run`` or ``example`` when the line before the fence says so."""
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def backends(self) -> tuple[str, ...]:
        """Both backends for anyio code without a backend of its own, else just one run."""
        compiled = compile(self.code, self.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        if compiled.co_flags & inspect.CO_COROUTINE or _ANYIO_RUN.search(self.code):
            return ("asyncio", "trio")
        return (AS_WRITTEN,)


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def expand_snippets(text: str) -> str:
    """Inline ``--8<-- "path"`` lines, paths relative to the repository root (as mkdocs.yml)."""

    def inline(match: re.Match[str]) -> str:
        included = (ROOT / match["path"]).read_text(encoding="utf-8")
        return "\n".join(match["indent"] + line for line in included.splitlines())

    return _SNIPPET.sub(inline, text)


def python_blocks(path: Path) -> Iterator[Block]:
    text = path.read_text(encoding="utf-8")
    for match in _FENCE.finditer(text):
        info = match["info"].strip().split()
        if not info or info[0] not in ("python", "py"):
            continue
        indent = match["indent"]
        body = "".join(
            line[len(indent) :] if line.startswith(indent) else line
            for line in match["body"].splitlines(keepends=True)
        )
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        yield Block(
            path=path,
            line=text.count("\n", 0, match.start()) + 1,
            code=expand_snippets(body),
            marker=marker["kind"] if marker else None,
            reason=marker["why"] if marker else "",
        )


def _param(block: Block, backend: str) -> ParameterSet:
    return pytest.param(block, backend, id=f"{block.name}-{backend}")


ALL_BLOCKS = [block for path in markdown_files() for block in python_blocks(path)]
RUNNABLE = [
    _param(block, backend)
    for block in ALL_BLOCKS
    if block.marker is None
    for backend in block.backends
]

# Runs one block as __main__: anyio.run() without a backend uses DOCS_BACKEND, and a block
# with top-level await (``async with ...:`` as in an async REPL) runs inside anyio.run.
RUNNER = """
import ast, inspect, os, sys
import anyio

backend = os.environ["DOCS_BACKEND"]
_run = anyio.run

def run(func, *args, backend=backend, backend_options=None):
    return _run(func, *args, backend=backend, backend_options=backend_options)

anyio.run = run
path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    code = compile(f.read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__", "__file__": path}
if code.co_flags & inspect.CO_COROUTINE:
    async def main():
        await eval(code, namespace)
    _run(main, backend=backend)
else:
    exec(code, namespace)
"""


@pytest.fixture(scope="module")
def docs_server() -> Iterator[str]:
    from idphoto_async.testing import LocalServer

    with LocalServer(qps=None, processing_time="fixed:0.1") as server:
        yield server.base_url


def make_workdir(path: Path) -> Path:
    """A working directory with ``me.jpg`` and three portraits in ``photos/``."""
    shutil.copy(SAMPLES / "01-head-and-shoulders.jpg", path / "me.jpg")
    (path / "photos").mkdir()
    for sample in sorted(SAMPLES.glob("0[1-3]-*.jpg")):
        shutil.copy(sample, path / "photos" / sample.name)
    return path


def run_block(block: Block, backend: str, base_url: str, workdir: Path) -> CompletedProcess[str]:
    script = workdir / "example.py"
    script.write_text(block.code, encoding="utf-8")
    env = {
        **os.environ,
        "IDPHOTO_BASE_URL": base_url,
        "IDPHOTO_API_KEY": "docs-example-key",
        "DOCS_BACKEND": "asyncio" if backend == AS_WRITTEN else backend,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def block_runs(
    request: pytest.FixtureRequest, docs_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[CompletedProcess[str]]]]:
    """Every selected block, started at once in parallel (most of their time is waiting)."""
    selected = {
        item.callspec.id
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_docs_python_block_runs"
    }
    with ThreadPoolExecutor(max_workers=PARALLEL_BLOCKS) as pool:
        runs = {
            param.id: pool.submit(
                run_block, *param.values, docs_server, make_workdir(tmp_path_factory.mktemp("doc"))
            )
            for param in RUNNABLE
            if param.id in selected
        }
        yield runs
        for run in runs.values():
            run.cancel()


def test_blocks_are_found_and_fragments_are_few() -> None:
    names = {block.path.relative_to(ROOT).as_posix() for block in ALL_BLOCKS}
    assert {"README.md", "docs/quickstart.md", "docs/guides/fastapi.md"} <= names
    no_run = [block.name for block in ALL_BLOCKS if block.marker == "no-run"]
    assert len(no_run) <= MAX_NO_RUN, f"too many no-run fragments: {no_run}"
    assert all(block.reason for block in ALL_BLOCKS if block.marker == "no-run"), (
        "say why a block cannot run: <!-- no-run: reason -->"
    )


# One xdist worker runs them all: `block_runs` starts every selected block at once, so on two
# workers each would start them all.
@pytest.mark.xdist_group("docs-blocks")
@pytest.mark.parametrize(("block", "backend"), RUNNABLE)
def test_docs_python_block_runs(
    block: Block,
    backend: str,
    request: pytest.FixtureRequest,
    block_runs: dict[str, Future[CompletedProcess[str]]],
) -> None:
    result = block_runs[request.node.callspec.id].result(timeout=2 * BLOCK_TIMEOUT)
    assert result.returncode == 0, (
        f"{block.name} failed on {backend}:\n{result.stdout}\n{result.stderr}"
    )


def test_api_reference_documents_every_public_name() -> None:
    import idphoto_async

    text = (DOCS / "reference" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: idphoto_async\.(\w+)$", text, re.MULTILINE))
    assert set(idphoto_async.__all__) - {"__version__"} <= documented


# -- docs/guides/errors.md: tables checked against the code -------------------------------


def table_rows(path: Path, name: str) -> list[list[str]]:
    """The body rows of the table between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name}:start -->(.*?)<!-- {name}:end -->", text, re.DOTALL)
    assert match, f"{path.name} has no table {name}"
    lines = [line.strip() for line in match[1].strip().splitlines() if line.strip()]
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]
    assert rows
    return rows


def _first_word(cell: str) -> str:
    return re.split(r"[\s,*]", cell.strip(), maxsplit=1)[0]


def _unquote(cell: str) -> str:
    return cell.strip("`").strip()


def test_task_state_table_matches_task_state() -> None:
    from idphoto_async import TaskState

    rows = table_rows(ERRORS_GUIDE, "task-states")
    seen = []
    for code, name, meaning, retryable, advice in rows:
        state = TaskState(int(code))
        seen.append(state)
        assert _unquote(name) == state.name, code
        assert meaning == state.description, code
        expected = ("yes" if state.retryable else "no") if state.is_failed else "-"
        assert _first_word(retryable) == expected, code
        assert advice, code
    assert sorted(seen) == sorted(TaskState), "one row per TaskState member"


def test_http_status_table_matches_error_classes() -> None:
    from idphoto_async import _errors

    rows = table_rows(ERRORS_GUIDE, "http-statuses")
    codes = []
    for status, exception, retryable, advice in rows:
        code = int(status.split()[0].replace("5xx", "500"))
        codes.append(code)
        error = _errors.status_error(code, "")
        assert type(error).__name__ == _unquote(exception), status
        assert _first_word(retryable) == ("yes" if error.retryable else "no"), status
        assert advice, status
    assert codes == [400, 401, 404, 413, 429, 500]


def test_error_class_table_covers_every_error() -> None:
    import idphoto_async
    from idphoto_async import _errors

    rows = table_rows(ERRORS_GUIDE, "error-classes")
    documented = {}
    for exception, raised_when, retryable, advice in rows:
        cls = getattr(idphoto_async, _unquote(exception))
        assert issubclass(cls, idphoto_async.IDPhotoError)
        expected = (
            "per state"
            if cls is idphoto_async.TaskFailedError
            else ("yes" if cls.retryable else "no")
        )
        assert retryable.startswith(expected), exception
        assert raised_when and advice, exception
        documented[cls.__name__] = cls
    public = {name for name in _errors.__all__ if name != "status_error"}
    public |= {
        name
        for name in idphoto_async.__all__
        if isinstance(obj := getattr(idphoto_async, name), type)
        and issubclass(obj, idphoto_async.IDPhotoError)
    }
    assert set(documented) == public


# -- docs/reference/cli.md: generated from the parsers -----------------------------------

CLI_START = "<!-- cli:start (generated by `python tests/test_docs_examples.py`; do not edit) -->"
CLI_END = "<!-- cli:end -->"
COMMANDS = ("batch", "create", "get", "wait", "serve")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    from idphoto_async.cli import build_parser

    parser = build_parser(["serve"])  # serve's flags load only when it is asked for
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("idphoto has no subcommands")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _paragraphs(text: str) -> str:
    return "\n\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()))


def _flags(action: argparse.Action) -> str:
    return ", ".join(f"`{flag}`" for flag in action.option_strings) or f"`{action.metavar}`"


def _value(action: argparse.Action) -> str:
    if not action.option_strings:
        return "one or more" if action.nargs == "+" else "one"
    if action.nargs == 0:
        return ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return " \\| ".join(f"`{choice}`" for choice in action.choices)
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    text = metavar if isinstance(metavar, str) else " ".join(metavar)
    return f"`{text}`"


def _synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    words = [f"idphoto {name}"]
    for action in parser._actions:
        if action.option_strings and action.required:
            words.append(f"{action.option_strings[0]} {action.metavar or action.dest.upper()}")
    words.append("[options]")
    for action in parser._actions:
        if not action.option_strings:
            words.append(f"{action.metavar}..." if action.nargs == "+" else str(action.metavar))
    return " ".join(words)


def cli_reference() -> str:
    """The generated part of docs/reference/cli.md."""
    out = [CLI_START, ""]
    for name, parser in _subparsers().items():
        assert name in COMMANDS, name
        formatter = parser._get_formatter()
        out += [f"## `idphoto {name}`", ""]
        out += ["```text", _synopsis(name, parser), "```", ""]
        if parser.description:
            out += [_paragraphs(parser.description), ""]
        for group in parser._action_groups:
            actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
            actions = [a for a in actions if not isinstance(a, argparse._HelpAction)]
            if not actions:
                continue
            title = (group.title or "options").replace("positional arguments", "arguments")
            out += [f"**{title[:1].upper()}{title[1:]}**", ""]
            out += ["| Name | Value | Description |", "| --- | --- | --- |"]
            for action in actions:
                helptext = formatter._expand_help(action) if action.help else ""
                out.append(f"| {_flags(action)} | {_value(action)} | {_cell(helptext)} |")
            out.append("")
        if parser.epilog:
            out += ["```text", parser.epilog.strip("\n"), "```", ""]
    out.append(CLI_END)
    return "\n".join(out)


def _with_cli_reference(text: str) -> str:
    start, end = text.index(CLI_START), text.index(CLI_END) + len(CLI_END)
    return text[:start] + cli_reference() + text[end:]


def test_cli_reference_is_generated_from_the_parsers() -> None:
    text = CLI_REFERENCE.read_text(encoding="utf-8")
    assert text == _with_cli_reference(text), (
        "docs/reference/cli.md is stale: run `python tests/test_docs_examples.py`"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_reference_lists_every_flag_of_the_help(command: str) -> None:
    """Cross-check against the real ``idphoto COMMAND --help`` output."""
    result = subprocess.run(
        [sys.executable, "-m", "idphoto_async.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    flags = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", result.stdout))
    section = CLI_REFERENCE.read_text(encoding="utf-8").split(f"## `idphoto {command}`")[1]
    section = section.split("\n## ")[0]
    documented = set(re.findall(r"`(--?[a-z][a-z0-9-]*)`", section))
    assert flags - {"-h", "--help"} <= documented


if __name__ == "__main__":
    CLI_REFERENCE.write_text(
        _with_cli_reference(CLI_REFERENCE.read_text(encoding="utf-8")), encoding="utf-8"
    )
    print(f"wrote {CLI_REFERENCE.relative_to(ROOT)}")
