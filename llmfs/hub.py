"""Is the Hugging Face hub reachable? Asked before anything would wait on it, so an offline machine gets a message
within seconds instead of a hang (model sources, hub datasets, benchmark downloads)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def hub_unreachable_reason(timeout: float = 5.0) -> str | None:
    """None if the hub's host accepts a TCP connection within `timeout`; else a short reason."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"the host {host} does not resolve (no network?)"
    except OSError as e:
        return f"{host}:{port} did not answer ({type(e).__name__})"
