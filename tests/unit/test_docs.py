"""The README stays true to the code: every config key is documented, the two commands come first."""

from pathlib import Path

from geoq.config.schema import KEYS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_leaf_config_key_is_in_the_readme_reference():
    parents = {k.path.rsplit(".", 1)[0] for k in KEYS if "." in k.path}
    leaves = [k.path for k in KEYS if k.path not in parents and k.path != "routes"]
    missing = [p for p in leaves if f"`{p}`" not in README]
    assert missing == []


def test_the_readme_gives_the_two_commands_first():
    first_code = README.split("```")[1]
    assert "bin/test" in first_code and "bin/demo" in first_code


def test_ci_runs_the_readme_test_command():
    assert "bin/test" in (ROOT / ".ci" / "run").read_text()
