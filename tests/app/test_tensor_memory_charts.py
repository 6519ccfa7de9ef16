"""The tensor-memory charts (app/charts.py): the training loop's counts drawn under the process's memory on the same
time axis, alone when no process reading exists, and one bar per run for the L16 comparison."""

from app import charts


def telemetry(t: float) -> dict:
    return {"kind": "telemetry", "time": t, "process_rss_bytes": 690e6, "system_total_bytes": 16e9}


def counted(step: int, t: float, scale: float = 1.0) -> dict:
    return {"kind": "tensor_memory", "step": step, "time": t, "weights_bytes": 5.4e6 * scale,
            "gradients_bytes": 5.4e6 * scale, "optimizer_bytes": 10.8e6 * scale, "activations_bytes": 51.5e6 * scale}


def test_tensor_counts_stack_under_the_process_memory_on_its_time_axis():
    records = [telemetry(100.0 + i) for i in range(10)] + [counted(1, 102.0), counted(10, 108.0)]
    fig = charts.memory_figure(records)
    names = [t.name for t in fig.data]
    assert names[0].startswith("Run process memory") and list(fig.data[0].y) == [690.0] * 10
    assert names[1:] == ["weights", "gradients", "optimizer states", "activations"]
    weights = fig.data[1]
    assert weights.yaxis == "y2" and weights.stackgroup == "tensors"
    assert list(weights.x) == [2.0, 8.0] and list(weights.y) == [5.4, 5.4]  # seconds since the first reading, MB
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis2.title.text == "Tensors (MB)"
    assert any(a.text == charts.TENSOR_LABEL for a in fig.layout.annotations)


def test_counts_alone_before_any_process_reading():
    fig = charts.memory_figure([counted(1, 50.0), counted(10, 55.0)])
    assert [t.name for t in fig.data] == list(charts.TENSOR_PARTS.values())
    assert list(fig.data[0].x) == [0.0, 5.0] and fig.layout.title.text == charts.TENSOR_LABEL


def test_a_bar_per_run_at_its_largest_count():
    runs = {"fp32": [counted(1, 0.0, 0.9), counted(10, 1.0)], "bf16-pure": [counted(1, 0.0, 0.5)], "fp16": []}
    fig = charts.tensor_memory_bars(runs)
    assert [t.name for t in fig.data] == list(charts.TENSOR_PARTS.values())
    assert list(fig.data[0].y) == ["fp32", "bf16-pure"] and list(fig.data[0].x) == [5.4, 2.7]
    assert [a.text for a in fig.layout.annotations] == [" 73 MB", " 37 MB"]
    assert charts.tensor_peak(runs["fp32"])["activations_bytes"] == 51.5e6
    assert "Waiting" in charts.tensor_memory_bars({"fp32": []}).layout.annotations[0].text
