from click.testing import CliRunner

from herald import __version__
from herald.cli.main import cli


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
