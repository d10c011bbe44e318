"""The L2 heartbeat key: from a file or the environment, never from argv and never built in;
the lab's key file, created readable by its owner only."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from herald.cli import agent as agent_cli
from herald.cli.main import cli
from herald.l2.key import (
    ENV_KEY,
    ENV_KEY_FILE,
    HeartbeatKeyError,
    create_key_file,
    load_key,
    read_key_file,
)
from herald.lab import cluster

KEY = b"0123456789abcdef0123"


def key_file(tmp_path: Path, data: bytes = KEY, mode: int = 0o600) -> Path:
    path = tmp_path / "l2.key"
    path.write_bytes(data)
    path.chmod(mode)
    return path


# -- where the key comes from --------------------------------------------------------------


def test_key_from_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert load_key(key_file(tmp_path), {}) == KEY
    assert not caplog.records


def test_one_trailing_newline_is_not_part_of_the_key(tmp_path: Path) -> None:
    """`echo KEY > FILE` and HERALD_L2_KEY=KEY must be the same key on every node."""
    assert read_key_file(key_file(tmp_path, KEY + b"\n")) == KEY
    assert read_key_file(key_file(tmp_path, KEY + b"\r\n")) == KEY
    assert read_key_file(key_file(tmp_path, KEY + b"\n\n")) == KEY + b"\n"
    assert load_key(None, {ENV_KEY: KEY.decode()}) == KEY


def test_key_from_environment() -> None:
    assert load_key(None, {ENV_KEY: KEY.decode()}) == KEY


def test_no_key_is_none_not_a_built_in_one() -> None:
    assert load_key(None, {}) is None
    assert load_key(None, {ENV_KEY: ""}) is None


def test_file_and_environment_together_is_an_error(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    with pytest.raises(HeartbeatKeyError, match=f"both {ENV_KEY} and a key file .*{path}"):
        load_key(path, {ENV_KEY: KEY.decode()})


def test_short_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HeartbeatKeyError, match=f"{ENV_KEY}: 15 bytes, at least 16"):
        load_key(None, {ENV_KEY: "x" * 15})
    path = key_file(tmp_path, b"x" * 15 + b"\n")
    with pytest.raises(HeartbeatKeyError, match=f"file {path}: 15 bytes, at least 16"):
        load_key(path, {})
    assert load_key(None, {ENV_KEY: "x" * 16}) == b"x" * 16


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "l2.key"
    with pytest.raises(HeartbeatKeyError, match=f"key file {path}: cannot read it"):
        load_key(path, {})


def test_unreadable_file_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = key_file(tmp_path, mode=0o000)

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        # What a user other than the owner gets (root, who runs the tests, reads any mode).
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(HeartbeatKeyError, match=f"key file {path}: cannot read it.*ermission"):
        load_key(path, {})


def test_directory_and_huge_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HeartbeatKeyError, match=str(tmp_path)):
        read_key_file(tmp_path)
    with pytest.raises(HeartbeatKeyError, match="larger than 4096 bytes"):
        read_key_file(key_file(tmp_path, b"x" * 4097))


def test_world_readable_file_warns_like_ssh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = key_file(tmp_path, mode=0o644)
    with caplog.at_level(logging.WARNING):
        assert read_key_file(path) == KEY
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "event=l2_key_file_world_readable" in record.message
    assert f"path={path} mode=0644" in record.message and "chmod o-rwx" in record.message


def test_group_readable_file_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        read_key_file(key_file(tmp_path, mode=0o640))
    assert not caplog.records


# -- herald agent ------------------------------------------------------------------------


class FakeAgent:
    """Stands for the agent loop: records the config the command built and returns."""

    configs: ClassVar[list[Any]] = []

    def __init__(self, config: Any, source: Any, **parts: Any) -> None:
        self.configs.append(config)

    async def counted_status(self) -> dict[str, Any]:
        return {}

    async def run(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {}


class FakeServer:
    def close(self) -> None:
        pass


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The configs `herald agent` would have run, without running an agent."""

    async def serve_status(*args: Any) -> FakeServer:
        return FakeServer()

    FakeAgent.configs = []
    monkeypatch.setattr(agent_cli, "Agent", FakeAgent)
    monkeypatch.setattr(agent_cli, "serve_status", serve_status)
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    yield FakeAgent.configs


def run_agent(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    argv = ["agent", "--node", "n1", "--manifests", str(tmp_path), "--status-dir", str(tmp_path)]
    return CliRunner().invoke(cli, [*argv, *args], env=env)


def test_agent_reads_the_key_file_option(tmp_path: Path, started: list[Any]) -> None:
    result = run_agent(tmp_path, "--l2-key-file", str(key_file(tmp_path)))
    assert result.exit_code == 0, result.output
    assert started[0].l2.key == KEY


def test_agent_reads_the_key_file_from_the_environment(tmp_path: Path, started: list[Any]) -> None:
    result = run_agent(tmp_path, env={ENV_KEY_FILE: str(key_file(tmp_path))})
    assert result.exit_code == 0, result.output
    assert started[0].l2.key == KEY


def test_agent_reads_the_key_from_the_environment_and_keeps_it_from_children(
    tmp_path: Path, started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEY, KEY.decode())
    result = run_agent(tmp_path)
    assert result.exit_code == 0, result.output
    assert started[0].l2.key == KEY
    # nft and the heartbeat process inherit the environment: they do not get the key.
    assert ENV_KEY not in os.environ


def test_agent_without_key_starts_with_l2_refused(
    tmp_path: Path, started: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = run_agent(tmp_path)
    assert result.exit_code == 0, result.output
    assert started[0].l2.key is None
    assert any("event=l2_disabled" in r.message for r in caplog.records)


def test_agent_with_a_missing_key_file_exits_naming_it(tmp_path: Path, started: list[Any]) -> None:
    path = tmp_path / "missing.key"
    result = run_agent(tmp_path, "--l2-key-file", str(path))
    assert result.exit_code != 0 and not started
    assert f"L2 heartbeat key file {path}: cannot read it" in result.output


def test_agent_has_no_key_option(tmp_path: Path, started: list[Any]) -> None:
    """A key on the command line is visible in `ps` to every user of the node."""
    result = run_agent(tmp_path, "--l2-key", KEY.decode())
    assert result.exit_code == 2 and not started
    assert "No such option '--l2-key'" in result.output


# -- the lab -------------------------------------------------------------------------------


def test_new_key_file_is_created_0600_not_chmoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Created with mode 0600: with umask 0 and chmod forbidden, any other way of making it
    would leave the key readable by others (or fail)."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the key file was chmod'ed after its creation")

    for name in ("chmod", "fchmod", "lchmod"):
        monkeypatch.setattr(os, name, forbidden, raising=False)
    path = tmp_path / "l2.key"
    path.write_bytes(b"an old key, world-readable")
    old_umask = os.umask(0)
    try:
        create_key_file(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_key_file(path)
    assert len(key) == 64 and int(key, 16) >= 0
    create_key_file(path)
    assert read_key_file(path) != key  # a new random key every time


class FakeLab:
    def __init__(self) -> None:
        self.spawned: list[tuple[list[str], dict[str, str] | None]] = []

    def spawn(self, host: str, argv: list[str], log: Path | None = None, env: Any = None) -> Any:
        self.spawned.append((list(argv), env))
        return type("Process", (), {"pid": 4242})()


def test_lab_agents_get_the_key_file_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "L2_KEY", tmp_path / "l2.key")
    monkeypatch.setenv(ENV_KEY, "a key the shell running lab up happens to have")
    monkeypatch.setattr(cluster, "LOGS", tmp_path)
    create_key_file(cluster.L2_KEY)
    network = FakeLab()
    state = {"manifests": str(tmp_path)}
    cluster._spawn_agent(network, "k8s-worker1", tmp_path, state)  # type: ignore[arg-type]
    ((argv, env),) = network.spawned
    assert env[ENV_KEY_FILE] == str(tmp_path / "l2.key") and ENV_KEY not in env
    assert env["PATH"] == os.environ["PATH"]
    key = read_key_file(Path(env[ENV_KEY_FILE])).decode()
    assert argv[1] == "agent" and not any(key in arg or "--l2-key" in arg for arg in argv)
    assert stat.S_IMODE(cluster.L2_KEY.stat().st_mode) == 0o600
