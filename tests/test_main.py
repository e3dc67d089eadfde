"""The ``ksqlpy`` command: every subcommand is listed, and starting one imports only its own
module (the server does not load the shell's or the test runner's dependencies)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ksqlpy.main import SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_chosen_subcommand_parses_its_own_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["server", "--help"])
    assert exit_info.value.code == 0
    assert "--bootstrap-servers" in capsys.readouterr().out


def test_server_does_not_import_other_subcommands() -> None:
    probe = (
        "import sys\n"
        "from ksqlpy.main import main\n"
        "try:\n"
        "    main(['server', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('cli.main', 'ksqlpy.testing.cli', 'ksqlpy.server.cli') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['ksqlpy.server.cli']"
