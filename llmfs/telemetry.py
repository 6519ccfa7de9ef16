"""What the machine is doing right now: GPU memory through NVML, torch's CUDA allocator, process and system memory.

`snapshot()` never raises: the UI calls it every second and a job's sampler calls it while training, and neither
may die because a driver is missing or a counter is unsupported. Missing readings are simply absent.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from typing import Any, Callable

_NVML_LOCK = threading.Lock()
_nvml_state: dict[str, Any] = {"tried": False, "ok": False, "error": None}


def _nvml():
    """pynvml, initialised once per process, or None where there is no NVIDIA driver."""
    with _NVML_LOCK:
        if not _nvml_state["tried"]:
            _nvml_state["tried"] = True
            try:
                import pynvml  # from nvidia-ml-py
                pynvml.nvmlInit()
                _nvml_state.update(ok=True, module=pynvml)
            except Exception as e:  # no driver, no library, no permission: all mean "no NVML here"
                _nvml_state["error"] = f"{type(e).__name__}: {e}"
        return _nvml_state.get("module") if _nvml_state["ok"] else None


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def gpu_readings() -> list[dict]:
    """One dict per NVIDIA GPU: memory used / total (bytes), utilisation (%), temperature (C), power (W)."""
    nv = _nvml()
    if nv is None:
        return []
    gpus = []
    count = _try(nv.nvmlDeviceGetCount) or 0
    for i in range(count):
        h = _try(lambda: nv.nvmlDeviceGetHandleByIndex(i))
        if h is None:
            continue
        mem = _try(lambda: nv.nvmlDeviceGetMemoryInfo(h))
        util = _try(lambda: nv.nvmlDeviceGetUtilizationRates(h))
        power_mw = _try(lambda: nv.nvmlDeviceGetPowerUsage(h))
        name = _try(lambda: nv.nvmlDeviceGetName(h))
        gpus.append(_drop_none({
            "index": i,
            "name": name.decode() if isinstance(name, bytes) else name,
            "memory_used_bytes": getattr(mem, "used", None),
            "memory_total_bytes": getattr(mem, "total", None),
            "utilization_pct": getattr(util, "gpu", None),
            "temperature_c": _try(lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            "power_w": power_mw / 1000.0 if power_mw is not None else None,
        }))
    return gpus


def torch_cuda_readings() -> list[dict]:
    """torch's caching allocator per visible device: allocated, reserved and peak allocated (bytes)."""
    try:
        import torch
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return []  # don't initialise CUDA just to read zeros
        return [{"index": i,
                 "allocated_bytes": torch.cuda.memory_allocated(i),
                 "reserved_bytes": torch.cuda.memory_reserved(i),
                 "peak_allocated_bytes": torch.cuda.max_memory_allocated(i)}
                for i in range(torch.cuda.device_count())]
    except Exception:
        return []


def process_readings() -> dict:
    try:
        import psutil
        proc = psutil.Process(os.getpid())
        vm = psutil.virtual_memory()
        return {"process_rss_bytes": proc.memory_info().rss,
                "system_used_bytes": vm.total - vm.available,
                "system_total_bytes": vm.total,
                "cpu_count": psutil.cpu_count() or 1}
    except Exception:
        return {}


def snapshot() -> dict:
    """Everything at once, flat where there is one value and a list per GPU. Never raises."""
    out: dict[str, Any] = {"time": time.time()}
    try:
        out.update(process_readings())
        gpus = gpu_readings()
        if gpus:
            out["gpus"] = gpus
            out["gpu_memory_used_bytes"] = sum(g.get("memory_used_bytes", 0) for g in gpus)
            out["gpu_memory_total_bytes"] = sum(g.get("memory_total_bytes", 0) for g in gpus)
        cuda = torch_cuda_readings()
        if cuda:
            out["cuda"] = cuda
            out["cuda_allocated_bytes"] = sum(c["allocated_bytes"] for c in cuda)
            out["cuda_peak_allocated_bytes"] = sum(c["peak_allocated_bytes"] for c in cuda)
    except Exception:  # belt and braces: the promise is "never raises"
        pass
    return out


def describe_machine() -> dict:
    """A plain description for the Home page and the CLI: accelerator, memory, CPU count."""
    info = process_readings()
    gpus = gpu_readings()
    cuda_ok = bool(_try(lambda: __import__("torch").cuda.is_available()))
    return {
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": _try(lambda: __import__("torch").__version__),
        "cpu_count": info.get("cpu_count") or os.cpu_count(),
        "system_total_bytes": info.get("system_total_bytes"),
        "cuda_available": cuda_ok,
        "gpus": gpus,
        "nvml_error": None if gpus else _nvml_state.get("error"),
    }


class Sampler:
    """Calls `sink(snapshot())` about every `interval` seconds in a daemon thread until `stop()`."""

    def __init__(self, sink: Callable[[dict], None], interval: float = 1.0):
        self._sink, self._interval = sink, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmfs-telemetry", daemon=True)

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            try:
                self._sink(snapshot())
            except Exception:
                pass  # a full disk must not kill the job through its sampler; the job's own writes will report it
            if self._stop.wait(self._interval):
                return


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}
