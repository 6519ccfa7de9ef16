"""Telemetry: readings on a CPU-only machine, and snapshot() never raises even when every source fails."""

from __future__ import annotations

import time

import llmfs.telemetry as telemetry


def test_cpu_fallback_has_process_and_system_memory():
    snap = telemetry.snapshot()
    assert snap["process_rss_bytes"] > 10_000_000
    assert 0 < snap["system_used_bytes"] <= snap["system_total_bytes"]
    assert abs(snap["time"] - time.time()) < 5


def test_no_gpu_readings_without_nvml(monkeypatch):
    monkeypatch.setattr(telemetry, "_nvml", lambda: None)
    assert telemetry.gpu_readings() == []
    assert "gpus" not in telemetry.snapshot()


def test_snapshot_never_raises(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(telemetry, "process_readings", boom)
    monkeypatch.setattr(telemetry, "gpu_readings", boom)
    snap = telemetry.snapshot()
    assert "time" in snap


class FakeNVML:
    """Stands in for pynvml with one GPU, to check how readings are shaped and summed."""
    NVML_TEMPERATURE_GPU = 0

    class Mem:
        used, total = 3 * 2**30, 80 * 2**30

    class Util:
        gpu = 57

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return object()

    def nvmlDeviceGetMemoryInfo(self, h):
        return self.Mem()

    def nvmlDeviceGetUtilizationRates(self, h):
        return self.Util()

    def nvmlDeviceGetPowerUsage(self, h):
        return 250_000

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H200"

    def nvmlDeviceGetTemperature(self, h, kind):
        raise RuntimeError("not supported")  # one unsupported counter must not lose the others


def test_nvml_readings_shape(monkeypatch):
    monkeypatch.setattr(telemetry, "_nvml", lambda: FakeNVML())
    [gpu] = telemetry.gpu_readings()
    assert gpu == {"index": 0, "name": "NVIDIA H200", "memory_used_bytes": 3 * 2**30,
                   "memory_total_bytes": 80 * 2**30, "utilization_pct": 57, "power_w": 250.0}
    snap = telemetry.snapshot()
    assert snap["gpu_memory_used_bytes"] == 3 * 2**30


def test_sampler_calls_sink_until_stopped():
    got = []
    s = telemetry.Sampler(got.append, interval=0.02).start()
    time.sleep(0.2)
    s.stop()
    n = len(got)
    time.sleep(0.1)
    assert n >= 3 and len(got) == n


def test_describe_machine_on_cpu():
    info = telemetry.describe_machine()
    assert info["cpu_count"] >= 1 and info["system_total_bytes"] > 0
    assert info["cuda_available"] in (True, False)
