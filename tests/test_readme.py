"""The README's scripted example runs as written."""

import os
import re
from pathlib import Path

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


def _section(text, heading):
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {heading}' section"
    return match.group(1)


def _synopsis_entries():
    """README's command synopsis: {"ipiv sim": "ipiv sim [SCENARIO] ...", ...} (continuation
    lines start with white space)."""
    block = re.search(r"```\n(ipiv .*?)```", _section(readme(), "Command line"), re.S).group(1)
    entries = []
    for line in block.splitlines():
        if line.startswith("ipiv "):
            entries.append(line)
        elif line.strip():
            entries[-1] += " " + line.strip()
    return entries


def _commands():
    """Every (sub)command path of the real parser with its options: {"ipiv board run": [...]}"""
    import argparse
    from tb.cli import build_parser

    def walk(prefix, parser, inherited):
        options = inherited + [a for a in parser._actions if a.option_strings
                               and not isinstance(a, argparse._HelpAction)]
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or prefix == "ipiv":
            yield prefix, options           # "ipiv" itself: its own options (--version)
        if not subs:
            return
        for name, sub in subs[0].choices.items():
            yield from walk(f"{prefix} {name}", sub, options if prefix != "ipiv" else [])
    return dict(walk("ipiv", build_parser(), []))


def test_synopsis_names_every_command_and_option():
    """Each subcommand of ``ipiv --help`` has a synopsis line naming each of its options."""
    entries = _synopsis_entries()
    for command, options in _commands().items():
        lines = [e for e in entries if e == command or e.startswith(command + " ")
                 and (command != "ipiv" or e.split()[1].startswith("-"))]
        assert lines, f"README synopsis lacks {command!r}"
        for action in options:
            assert any(re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", line)
                       for line in lines for opt in action.option_strings), \
                f"README synopsis of {command!r} lacks {action.option_strings}"


def test_synopsis_names_no_option_that_does_not_exist():
    commands = _commands()
    for entry in _synopsis_entries():
        command = max((c for c in commands if entry == c or entry.startswith(c + " ")),
                      key=len, default=None)
        assert command, f"README synopsis names an unknown command: {entry!r}"
        known = {opt for action in commands[command] for opt in action.option_strings}
        for opt in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", entry[len(command):]):
            assert opt in known, f"{command}: README names {opt}, which does not exist"


def test_layout_table_names_every_module():
    layout = _section(readme(), "Layout")
    missing = []
    for top in ("hdl", "sim", "tb"):
        for path in sorted(Path(ROOT, top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if path.name in ("__init__.py", "__main__.py"):
                continue
            if rel not in layout:
                missing.append(rel)
    assert not missing, f"README layout table misses {missing}"


def test_vmxcap_section_starts_with_the_question_and_its_recipe_works(tmp_path):
    """The vmxcap section opens with "Does my CPU support IPIv?" and a shell recipe; run
    here with stand-ins for sudo, modprobe and msr-tools' rdmsr (which prints ``-c`` values
    as ``0x%llx`` and fails on an MSR the CPU lacks, rdmsr.c), its output is what
    ``ipiv vmxcap --msrs`` reads."""
    import shutil
    import subprocess
    from sim.vmx_caps import MSRs, PRESETS
    text = readme()
    assert re.search(r"^## Does my CPU support IPIv\? \(`ipiv vmxcap`\)$", text, re.M)
    section = _section(text, "Does my CPU support IPIv? (`ipiv vmxcap`)")
    recipe = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    assert "ipiv vmxcap --msrs vmx-msrs.txt" in recipe
    values = {int(k): v for k, v in PRESETS["no-tertiary"][1].items()}    # 0x492 absent
    table = " ".join(f"[{i}]={v:#x}" for i, v in values.items())
    stubs = f"""declare -A MSRS=({table})
sudo() {{ "$@"; }}
modprobe() {{ :; }}
rdmsr() {{ local msr="${{@: -1}}"; [[ -v MSRS[$((msr))] ]] || return 4; \\
    printf '0x%x\\n' "${{MSRS[$((msr))]}}"; }}
ipiv() {{ :; }}
"""
    bash = shutil.which("bash")
    subprocess.run([bash, "-c", stubs + recipe], cwd=tmp_path, check=True, timeout=60)
    printed = (tmp_path / "vmx-msrs.txt").read_text()
    assert len(printed.splitlines()) == len(values)
    assert MSRs.parse(printed).values == values


def test_tests_index_names_every_test_file():
    """tests/README.md puts every test file in its layer (and names no file that is gone)."""
    tests = Path(__file__).resolve().parent
    index = (tests / "README.md").read_text()
    files = {p.name for p in tests.glob("test_*.py")}
    named = set(re.findall(r"`(test_\w+\.py)`", index))
    assert files - named == set(), f"tests/README.md misses {sorted(files - named)}"
    assert named - files == set(), f"tests/README.md names missing files {sorted(named - files)}"
