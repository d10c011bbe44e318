"""nftables in the agent's own process, through libnftables (the library behind `nft`).

Starting the `nft` command costs ~16 ms before it does anything (measured on the lab
machine: an element added and deleted in 16 ms with `nft -f`, 0.1 ms with the library and a
context kept across calls, which also keeps nft's cache of the ruleset while nothing else
changes it). A Service change costs each node one transaction, so that fixed cost was most
of the datapath's share of the announcement latency. The library takes the same scripts
and gives the same error text as the command; it acts in the calling process's network
namespace (the agent runs in its node's), so `Nft` stays for callers that name a namespace.
ctypes releases the GIL during the calls, so the heartbeat thread keeps running.
"""

from __future__ import annotations

import ctypes
import json
import threading

LIBRARY = "libnftables.so.1"
# From <nftables/libnftables.h>.
_NFT_CTX_DEFAULT = 0
_NFT_CTX_OUTPUT_JSON = 1 << 4


class LibNftUnavailable(OSError):
    """libnftables cannot be loaded (the nftables package brings it)."""


def _load() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as err:
        raise LibNftUnavailable(f"{LIBRARY}: {err}") from err
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_char_p
    lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    return lib


class LibNft:
    """The interface of `apply.Nft` (transaction, list_json), without a process per call."""

    netns = None  # the calling process's namespace, always

    def __init__(self) -> None:
        self._lib = _load()
        self._ctx: int | None = None
        self._open()
        # One context, used by one call at a time (the datapath runs in worker threads).
        self._lock = threading.Lock()

    def _open(self) -> None:
        self._ctx = self._lib.nft_ctx_new(_NFT_CTX_DEFAULT)
        if not self._ctx:
            raise LibNftUnavailable("nft_ctx_new failed")
        if self._lib.nft_ctx_buffer_output(self._ctx) or self._lib.nft_ctx_buffer_error(self._ctx):
            self.close()
            raise LibNftUnavailable("cannot buffer libnftables output")

    def transaction(self, script: str, check_only: bool = False) -> str | None:
        """Run `script` as one transaction; the error text when nft refuses it."""
        with self._lock:
            if not check_only:
                rc, _, error = self._run(script)
                return None if rc == 0 else error.strip()
            self._lib.nft_ctx_set_dry_run(self._ctx, True)
            try:
                rc, _, error = self._run(script)
            finally:
                # libnftables 1.0.6 keeps in its cache what a successful dry run would have
                # made (pointing into the freed script), and a later command can abort the
                # process on it; fixed upstream after 1.0.6. A fresh context has no cache.
                self.close()
                self._open()
        return None if rc == 0 else error.strip()

    def list_json(self, *what: str) -> list[dict[str, object]]:
        with self._lock:
            flags = self._lib.nft_ctx_output_get_flags(self._ctx)
            self._lib.nft_ctx_output_set_flags(self._ctx, flags | _NFT_CTX_OUTPUT_JSON)
            try:
                rc, output, _ = self._run("list " + " ".join(what))
            finally:
                self._lib.nft_ctx_output_set_flags(self._ctx, flags)
        if rc != 0:
            return []
        items: list[dict[str, object]] = json.loads(output).get("nftables", [])
        return items

    def close(self) -> None:
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None

    def _run(self, script: str) -> tuple[int, str, str]:
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
        # Reading a buffer also empties it for the next call.
        output = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
        error = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return rc, output.decode(errors="replace"), error.decode(errors="replace")
