"""The README's scripted example runs as written."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_readme_python_example_runs(capsys):
    text = readme()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert "TertiaryExec=0x0000000000000010" in capsys.readouterr().out


def test_readme_quick_start_is_two_commands():
    text = readme()
    quick = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S).group(1)
    assert [line.split("#")[0].strip() for line in quick.strip().splitlines()] == \
        ["make sim", "make test"]
