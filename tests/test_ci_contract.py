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
