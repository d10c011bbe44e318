"""Where the L2 heartbeat key comes from: a file, or the environment, never a command-line
value (`ps` shows every process's argv to every user of the node). There is no built-in key:
anyone who can send UDP to the node addresses and knows the key can claim VIPs, so a key
written in the source would be everyone's.

The key file holds the key itself, bytes as they are, except one trailing line ending (so a
key written with `echo` or `openssl rand -hex 32 > FILE` is the same key as that text in
HERALD_L2_KEY).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from herald.l2.heartbeat import MIN_KEY_SIZE

log = logging.getLogger(__name__)

ENV_KEY = "HERALD_L2_KEY"
ENV_KEY_FILE = "HERALD_L2_KEY_FILE"
# Far above any sensible key: a larger file is a wrong path (a log, a certificate bundle).
MAX_KEY_FILE_SIZE = 4096
# What `create_key_file` writes: 32 random bytes, as 64 hex digits (text, so it also fits in
# HERALD_L2_KEY and a Kubernetes Secret's literal).
NEW_KEY_BYTES = 32
GENERATE_HINT = "generate one with `(umask 077; openssl rand -hex 32 > FILE)`"


class HeartbeatKeyError(ValueError):
    """A key that was asked for cannot be used; the message names where it came from."""


def load_key(path: Path | None, environ: Mapping[str, str]) -> bytes | None:
    """The key from the file at `path` (--l2-key-file / HERALD_L2_KEY_FILE) or from
    `environ`'s HERALD_L2_KEY; None when neither is given (the agent then runs without L2).
    Both given is an error: nodes that each picked a different one would not hear each
    other, and nothing would say why."""
    # Empty counts as unset, as click does for HERALD_L2_KEY_FILE.
    value = environ.get(ENV_KEY) or None
    if path is not None and value is not None:
        raise HeartbeatKeyError(
            f"L2 heartbeat key: both {ENV_KEY} and a key file ({path}) are given: "
            f"unset {ENV_KEY} or drop --l2-key-file / {ENV_KEY_FILE}"
        )
    if path is not None:
        return read_key_file(path)
    if value is not None:
        return _checked(value.encode(), f"{ENV_KEY}")
    return None


def read_key_file(path: Path) -> bytes:
    """The key in the file at `path`. Warns, as ssh does, when the file is world-readable:
    every user of the node could then claim VIPs."""
    try:
        with path.open("rb") as file:
            # fstat, not stat: the mode of the file actually read, not of whatever is at
            # the path a moment later.
            mode = os.fstat(file.fileno()).st_mode
            data = file.read(MAX_KEY_FILE_SIZE + 1)
    except OSError as err:
        raise HeartbeatKeyError(
            f"L2 heartbeat key file {path}: cannot read it ({err.strerror or err}): "
            f"check the path and that this user may read it, or {GENERATE_HINT}"
        ) from err
    if not stat.S_ISREG(mode):
        raise HeartbeatKeyError(f"L2 heartbeat key file {path}: not a regular file")
    if len(data) > MAX_KEY_FILE_SIZE:
        raise HeartbeatKeyError(
            f"L2 heartbeat key file {path}: larger than {MAX_KEY_FILE_SIZE} bytes: is it "
            f"the right file? A key is 16 to a few hundred bytes; {GENERATE_HINT}"
        )
    if mode & stat.S_IROTH:
        log.warning(
            "event=l2_key_file_world_readable path=%s mode=%04o fix=%r",
            path,
            stat.S_IMODE(mode),
            f"chmod o-rwx {path} (a Secret volume: defaultMode 0400); any user of this "
            "node who reads the key can claim VIPs",
        )
    return _checked(data.removesuffix(b"\n").removesuffix(b"\r"), f"file {path}")


def _checked(key: bytes, source: str) -> bytes:
    if len(key) < MIN_KEY_SIZE:
        raise HeartbeatKeyError(
            f"L2 heartbeat key from {source}: {len(key)} bytes, at least {MIN_KEY_SIZE} "
            f"needed; {GENERATE_HINT}"
        )
    return key


def create_key_file(path: Path) -> None:
    """Writes a new random key to a new file at `path`, created readable by its owner only
    (mode 0600 from the start: a chmod after writing would leave the key readable for a
    moment). Whatever was at `path` is replaced."""
    path.unlink(missing_ok=True)
    # O_EXCL: a file that survived the unlink (a race) keeps its own mode under O_CREAT.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(secrets.token_hex(NEW_KEY_BYTES).encode())
