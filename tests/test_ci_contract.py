"""The repo's own contract: README opens with the two commands, .ci/run calls the test command."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_opens_with_two_commands():
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```")
    first_code = blocks[1].strip().splitlines()
    cmds = [l.split("#")[0].strip() for l in first_code[1:] if l.split("#")[0].strip()]
    assert cmds == ["python3 run.py demo", "python3 run.py test"], cmds


def test_ci_calls_readme_test_command():
    run = (ROOT / ".ci" / "run").read_text()
    assert "python3 run.py test" in run


def test_no_tests_is_a_failure():
    src = (ROOT / "run.py").read_text()
    assert "rc == 5" in src


def test_a_moved_checkout_reinstalls_and_version_names_the_package_folder(tmp_path):
    """run.py's install stamp depends on the checkout's place (a copied .venv still runs the old tree), and
    `vljax --version` says which folder the command runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_py", ROOT / "run.py")
    run_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_py)
    here = run_py._stamp()
    for name in ("setup.py", "constraints.txt"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    run_py.ROOT = tmp_path
    assert run_py._stamp() != here

    from vljax import main as cli

    assert f"at {ROOT / 'vljax'} " in cli._version()
