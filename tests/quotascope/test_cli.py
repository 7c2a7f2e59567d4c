"""The command line as a whole: every command is offered, and running one loads only that one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from quotascope.cli import COMMANDS, build_parser, chosen_command

ROOT = Path(__file__).resolve().parents[2]


def test_the_full_parser_offers_every_command() -> None:
    help_text = build_parser().format_help()
    for command in COMMANDS:
        assert f"    {command}" in help_text


def test_the_command_is_the_first_argument() -> None:
    assert chosen_command(["ingest", "--db", "x", "log.jsonl"]) == "ingest"
    assert chosen_command(["--help"]) is None
    assert chosen_command(["nonsense", "ingest"]) is None
    assert chosen_command([]) is None


def test_running_a_command_imports_only_its_own_module() -> None:
    # the demo command's module pulls in the emulator, the probe and the scheduler (0.8 s of imports)
    code = (
        "import sys\n"
        "from quotascope.cli import main\n"
        "try:\n"
        "    main(['ingest', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('quotascope.commands.', 'collectors.'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = done.stdout.strip().splitlines()[-1]
    assert "quotascope.commands.ingest" in loaded
    for other in ("quotascope.commands.demo", "quotascope.commands.probe", "collectors.emulator"):
        assert other not in loaded, loaded
