"""The command line answers `--help` and argument errors without importing torch, under the right program name;
the package's public names resolve lazily (PEP 562) and stay listed."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

import hyperstyle_core as hs
from hyperstyle_core.cli import parser as cli_parser
from hyperstyle_core.io.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)     # measurements, shown with --log-cli-level=INFO

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "numpy", "PIL", "tqdm")
COMMANDS = ("download", "convert", "align", "invert", "edit", "transfer", "run", "bench", "ganspace",
            "styleclip-stats", "styleclip-directions", "clip-convert", "fit-direction", "animate", "evaluate", "train")
# What the console script pip writes for `hyperstyle = hyperstyle_core.cli:main` does, argv[0] included.
ENTRY_POINT = """
import json, sys
from hyperstyle_core.cli import main
sys.argv[0] = "/somewhere/bin/hyperstyle"
try:
    code = main({argv!r})
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("\\nRESULT " + json.dumps({{"code": code, "heavy": heavy}}))
"""


def _python(*args: str, label: str | None = None) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    log.info("%s: %.2f s", label or " ".join(args), time.perf_counter() - started)     # measured, not asserted
    return done


def _entry_point(argv: list[str]) -> tuple[dict, str, str]:
    """Run `hyperstyle ARGV` as the installed script would; returns (result, stdout, stderr)."""
    done = _python("-c", ENTRY_POINT.format(argv=argv, heavy=HEAVY), label=f"hyperstyle {' '.join(argv)}")
    head, _, result = done.stdout.rpartition("\nRESULT ")
    assert result, done.stderr
    return json.loads(result), head, done.stderr


def test_help_imports_no_torch_and_names_the_program():
    result, out, _ = _entry_point(["--help"])
    assert result == {"code": 0, "heavy": []}
    assert out.startswith("usage: hyperstyle [-h]")
    listed = out.split("\n\n")[0]
    for command in COMMANDS:
        assert command in listed, command


@pytest.mark.parametrize("command", ["run", "edit", "transfer", "download", "ganspace", "bench"])
def test_sub_command_help_imports_no_torch(command):
    result, out, _ = _entry_point([command, "--help"])
    assert result == {"code": 0, "heavy": []}
    assert out.startswith(f"usage: hyperstyle {command} ")


@pytest.mark.parametrize("argv, message", [
    (["run"], "hyperstyle run: error: one of the arguments --input --input-list is required"),
    (["download", "--size", "big"], "hyperstyle download: error: argument --size: invalid int value: 'big'"),
    (["nosuch"], "hyperstyle: error: argument command: invalid choice: 'nosuch'"),
])
def test_argument_errors_import_no_torch(argv, message):
    result, _, err = _entry_point(argv)
    assert result == {"code": 2, "heavy": []}
    assert message in err


def test_python_dash_m_names_itself():
    done = _python("-m", "hyperstyle_core", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m hyperstyle_core [-h]")
    done = _python("-m", "hyperstyle_core", "edit")
    assert done.returncode == 2 and "python -m hyperstyle_core edit: error:" in done.stderr


def test_a_parsed_command_runs_its_implementation(capsys):
    """The entry point imports cli/commands.py once the arguments are good, and the command runs."""
    result, out, _ = _entry_point(["download", "--list"])
    assert result["code"] == 0 and "torch" in result["heavy"]
    assert "hyperstyle_ffhq" in out and "groups:" in out


def test_entry_point_is_the_light_main():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["hyperstyle"] == "hyperstyle_core.cli:main"
    assert cli_parser.program_name("/usr/bin/hyperstyle") == "hyperstyle"
    assert cli_parser.program_name(str(ROOT / "hyperstyle_core" / "__main__.py")) == "python -m hyperstyle_core"
    assert cli_parser.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS     # a copy: io.images imports torch


def test_public_names_resolve_lazily():
    script = """
import sys, warnings
import hyperstyle_core as hs
light = "torch" not in sys.modules
listed = set(hs.__all__) <= set(dir(hs)) and {"load", "invert", "WeightDeltas", "run_folder", "nn"} <= set(dir(hs))
from hyperstyle_core import WeightDeltas
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import hyperstyle_core.batch as old      # a release 0.1 path (hyperstyle_core._legacy)
print(light, listed, WeightDeltas.__module__, hs.load.__module__, old.run_folder is hs.run_folder,
      any(issubclass(w.category, DeprecationWarning) for w in caught))
"""
    done = _python("-c", script, label="import hyperstyle_core; resolve names")
    assert done.stdout.split() == ["True", "True", "hyperstyle_core.deltas", "hyperstyle_core.io.checkpoints", "True",
                                   "True"], done.stderr


def test_every_public_name_resolves_in_process():
    for name in hs.__all__:
        assert getattr(hs, name) is not None, name
    assert hs.nn.stylegan2.Generator is hs.Generator and hs.__version__
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        hs.nope
