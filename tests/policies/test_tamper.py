"""Tamper findings in a candidate's Python source: the static scan of ``policies.tamper``.

Each attack is the source a candidate could write to turn a red gate green (the end-to-end
runs of three of them are tests/runner/loop/test_fake_green.py); each ordinary construct next
to it must stay quiet, or every real fix would be flagged.
"""

from __future__ import annotations

import textwrap

import pytest

from policies.tamper import MAX_PER_FILE, MAX_SOURCE_BYTES, Finding, scan, scan_source


def _found(source: str, path: str = "pkg/mod.py") -> list[Finding]:
    return scan_source(path, textwrap.dedent(source).encode())


def _one(source: str, path: str = "pkg/mod.py") -> Finding:
    found = _found(source, path)
    assert len(found) >= 1, source
    return found[0]


@pytest.mark.parametrize(
    ("source", "line", "kind", "what"),
    [
        (
            "import atexit, os\n\natexit.register(lambda: os._exit(0))\n",
            3,
            "exit_at_import",
            "atexit.register at import",
        ),
        ("import os as o\n\nif True:\n    o._exit(0)\n", 4, "exit_at_import", "os._exit at import"),
        ("from os import _exit\n", 1, "exit_at_import", "imports os._exit"),
        ("import sys\nsys.exit(0)\n", 2, "exit_at_import", "sys.exit at import"),
        ("raise SystemExit(0)\n", 1, "exit_at_import", "raises SystemExit at import"),
        ("exit(0)\n", 1, "exit_at_import", "exit() at import"),
        (
            "import atexit\n\n@atexit.register\ndef bye():\n    pass\n",
            3,
            "exit_at_import",
            "atexit.register at import",
        ),
        (
            "import os\n\ndef boom():\n    os._exit(0)\n\nboom()\n",
            4,
            "exit_at_import",
            "os._exit at import",
        ),
        ("class K:\n    import sys\n    sys.exit(3)\n", 3, "exit_at_import", "sys.exit at import"),
        ("import os\nf = getattr(os, '_exit')\n", 2, "runner_hook", "names '_exit' in a string"),
        ("m = __import__('atexit')\n", 1, "runner_hook", "names 'atexit' in a string"),
        (
            "def pytest_runtest_makereport(item, call):\n    pass\n",
            1,
            "runner_hook",
            "defines pytest hook pytest_runtest_makereport outside a conftest.py",
        ),
        (
            "class P:\n    async def pytest_sessionfinish(self, session):\n        pass\n",
            2,
            "runner_hook",
            "defines pytest hook pytest_sessionfinish",
        ),
        ("pytest_plugins = ['evil']\n", 1, "runner_hook", "sets pytest_plugins"),
        (
            "def f(config):\n    config.pluginmanager.register(object())\n",
            2,
            "runner_hook",
            "reaches pytest's plugin machinery (pluginmanager)",
        ),
        (
            "import pytest\n\n@pytest.hookimpl(hookwrapper=True)\ndef f():\n    yield\n",
            3,
            "runner_hook",
            "reaches pytest's plugin machinery (hookimpl)",
        ),
        ("from pytest import hookimpl\n", 1, "runner_hook", "imports pytest.hookimpl"),
        ("import _pytest.runner\n", 1, "runner_hook", "imports _pytest.runner"),
        ("from pluggy import HookimplMarker\n", 1, "runner_hook", "imports pluggy"),
        (
            "import pytest\npytest.main = lambda *a: 0\n",
            2,
            "runner_patch",
            "patches the test runner (pytest.main)",
        ),
        (
            "from unittest import TestCase\nTestCase.run = None\n",
            2,
            "runner_patch",
            "patches the test runner (unittest.TestCase.run)",
        ),
        (
            "import unittest as u\nsetattr(u.TestResult, 'wasSuccessful', lambda s: True)\n",
            2,
            "runner_patch",
            "patches the test runner (setattr on unittest.TestResult)",
        ),
        (
            "import sys\nsys.modules['pytest'] = object()\n",
            2,
            "runner_patch",
            "patches the test runner (sys.modules['pytest'])",
        ),
        ("import pytest\ndel pytest.fail\n", 2, "runner_patch", "patches the test runner"),
    ],
)
def test_each_attack_is_found_with_its_line_and_what(
    source: str, line: int, kind: str, what: str
) -> None:
    found = _found(source)
    assert any(f.line == line and f.kind == kind and what in f.what for f in found), found
    assert all(str(f).startswith(f"pkg/mod.py:{f.line}: ") for f in found)


def test_the_three_fake_green_attacks_of_the_end_to_end_tests_are_found() -> None:
    from tests.runner.loop.test_fake_green import ATEXIT, COMPAT, PLUGIN

    assert [f.what.split(":")[0] for f in _found(ATEXIT, "src/__init__.py")] == [
        "atexit.register at import",
        "os._exit at import",
    ]
    compat = {f.what for f in _found(COMPAT, "src/_compat.py")}
    assert "reaches pytest's plugin machinery (pluginmanager)" in compat
    assert "defines pytest hook pytest_runtest_makereport outside a conftest.py" in compat
    plugin = [str(f) for f in _found(PLUGIN, "src/evil_plugin.py")]
    assert "src/evil_plugin.py:5: defines pytest hook pytest_runtest_makereport outside a" \
        " conftest.py" in plugin  # fmt: skip


@pytest.mark.parametrize(
    "source",
    [
        # ordinary code: imports of pytest, exits that do not run at import, usual names
        "import pytest\n\ndef check(x):\n    if x < 0:\n        pytest.fail('negative')\n",
        "import sys\n\ndef main():\n    sys.exit(1)\n\nif __name__ == '__main__':\n    main()\n",
        "import sys\n\nif '__main__' == __name__:\n    sys.exit(main())\n",
        "import os\n\ndef child():\n    os._exit(0)\n",
        "import atexit\n\ndef start():\n    atexit.register(print)\n",
        "import os\nos.environ['X'] = '1'\nos.path.join('a', 'b')\n",
        "import unittest.mock as mock\nm = mock.MagicMock()\nm.return_value = 3\n",
        "hooks = {}\nhooks['x'] = 1\nclass Plugin:\n    def register(self, x):\n        pass\n",
        "def exit_code():\n    return 0\n\nexit_code()\n",
        "from sys import exit\n\ndef main():\n    exit(2)\n",
        "'''A docstring that talks about pytest_plugins and atexit.'''\n",
    ],
)
def test_ordinary_code_is_not_a_finding(source: str) -> None:
    assert _found(source) == []


def test_hook_names_in_conftest_and_generate_tests_in_test_modules_are_not_findings() -> None:
    hook = "def pytest_runtest_makereport(item, call):\n    pass\n"
    assert _found(hook, "tests/conftest.py") == []
    generate = "def pytest_generate_tests(metafunc):\n    pass\n"
    assert _found(generate, "tests/test_x.py") == []
    assert _found(generate, "pkg/mod.py")  # elsewhere it is a plugin's hook


def test_a_module_named_like_the_test_runner_at_a_top_is_a_finding() -> None:
    found = scan({"pytest.py": b"", "src/_pytest/__init__.py": b"", "src/pkg/py.py": b"x = 1\n",
                  "unittest/mock.py": b"", "docs/pytest.txt": b""})  # fmt: skip
    assert [str(f) for f in found] == [
        "pytest.py:1: shadows the test runner's module pytest",
        "src/_pytest/__init__.py:1: shadows the test runner's module _pytest",
        "unittest/mock.py:1: shadows the test runner's module unittest",
    ]


def test_what_cannot_be_scanned_is_a_finding_not_an_error() -> None:
    (broken,) = scan_source("pkg/a.py", b"def f(:\n")
    assert broken.kind == "not_scanned" and "cannot parse" in broken.what
    (nul,) = scan_source("pkg/a.py", b"x = 1\0\n")
    assert nul.kind == "not_scanned"
    (big,) = scan_source("pkg/a.py", b"#" * (MAX_SOURCE_BYTES + 1))
    assert big.kind == "not_scanned" and str(MAX_SOURCE_BYTES) in big.what
    deep = ("(" * 5000 + ")" * 5000).encode()  # deeper than the parser goes
    assert [f.kind for f in scan_source("pkg/a.py", deep)] == ["not_scanned"]
    latin = "# -*- coding: latin-1 -*-\nname = 'caf\xe9'\n".encode("latin-1")
    assert scan_source("pkg/a.py", latin) == []


def test_findings_per_file_are_capped_and_the_rest_counted() -> None:
    source = "".join(f"def pytest_h{i}():\n    pass\n" for i in range(MAX_PER_FILE + 5))
    found = scan_source("pkg/a.py", source.encode())
    assert len(found) == MAX_PER_FILE + 1 and found[-1].what == "5 more"


def test_a_changed_file_is_judged_on_what_the_candidate_added() -> None:
    plugin = b"import pytest\n\n\ndef pytest_configure(config):\n    pass\n"  # a plugin's own
    fixed = plugin + b"\n\ndef helper():\n    return 1\n"
    assert scan({"src/plugin.py": fixed}, before={"src/plugin.py": plugin}) == []
    added = fixed + b"\n\ndef pytest_runtest_makereport(item, call):\n    pass\n"
    (new,) = scan({"src/plugin.py": added}, before={"src/plugin.py": plugin})
    assert new.line == 12 and "pytest_runtest_makereport" in new.what
    twice = plugin + b"\n\ndef pytest_configure(config):\n    pass\n"  # one more of the same
    assert len(scan({"src/plugin.py": twice}, before={"src/plugin.py": plugin})) == 1
    assert scan({"pytest.py": b"x = 2\n"}, before={"pytest.py": b"x = 1\n"}) == []
    (still,) = scan({"src/a.py": b"def f(:\n"}, before={"src/a.py": b"def f(:\n"})
    assert still.kind == "not_scanned"  # what cannot be read is never vouched for
    assert len(scan({"src/plugin.py": plugin}, before={"src/other.py": plugin})) == 1


def test_only_python_files_are_read() -> None:
    assert scan({"pkg/data.txt": b"import atexit\natexit.register(print)\n"}) == []
    assert scan({"pkg/Mod.PY": b"import atexit\natexit.register(print)\n"})
