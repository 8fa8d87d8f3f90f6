"""The README's Python client recipes, run as written against a gateway with a mock upstream.

Each recipe is the fenced block after a `<!-- recipe: NAME -->` marker in README.md; it reads the
gateway's URL, key and model from environment variables (with the defaults a reader would use),
which this test points at the fixture's gateway.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MASTER_KEY

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!-- recipe: ([a-z0-9-]+) -->\s*```python\n(.*?)```", re.S)
# The model each recipe calls in the fixture's config (the Anthropic one is routed by its name).
MODELS = {"openai-sdk": "gpt-4o", "openai-sdk-stream": "gpt-4o", "langchain": "gpt-4o",
          "anthropic-sdk": "claude-sonnet-4-5-20250929", "agents-sdk": "gpt-4o"}


def recipes():
    return dict(MARKER.findall((ROOT / "README.md").read_text()))


def test_readme_has_the_python_recipes():
    assert set(MODELS) <= set(recipes()), sorted(recipes())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_recipe_runs_as_written(gateway, name, tmp_path):
    code = recipes()[name]
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    env = dict(
        os.environ,
        SWITCHYARD_URL=gateway.removesuffix("/v1"),
        SWITCHYARD_API_KEY=MASTER_KEY,
        SWITCHYARD_MODEL=MODELS[name],
    )
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), f"{name} printed nothing"
