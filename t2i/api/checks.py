"""Start-up checks for the APIs, light enough to run before the model stack is imported."""

from __future__ import annotations


def check_api_start(host: str, api_key: str, loopback_hosts: tuple[str, ...]) -> None:
    """Refuse (SystemExit with why) to serve the APIs beyond loopback without a key."""
    if host not in loopback_hosts and not api_key:
        raise SystemExit(f"t2i: the APIs (--api) on {host} would be open to the network: set T2I_API_KEY to a "
                         "secret key, or listen on 127.0.0.1")
