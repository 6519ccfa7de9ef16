"""The chart builders are pure: records in, plotly figure out."""

from app import charts


def train(step, loss, total=100, tps=1000.0):
    return {"kind": "train", "step": step, "loss": loss, "total_steps": total, "tokens_per_s": tps, "time": step}


def test_loss_chart_is_readable_from_the_first_point():
    fig = charts.loss_figure([train(1, 8.3)])
    (trace,) = fig.data
    assert list(trace.x) == [1] and "markers" in trace.mode
    lo, hi = fig.layout.yaxis.range
    assert lo < 8.3 < hi and hi - lo > 0.05
    assert fig.layout.xaxis.range[0] < 1 < fig.layout.xaxis.range[1] <= 100.5


def test_loss_chart_shows_eval_points_and_keeps_the_last_of_repeated_steps():
    records = [train(1, 8.0), train(2, 7.0), train(2, 6.5), {"kind": "eval", "step": 2, "eval_loss": 7.2}]
    fig = charts.loss_figure(records)
    assert list(fig.data[0].y) == [8.0, 6.5]
    assert fig.data[1].name == "held-out loss" and list(fig.data[1].y) == [7.2]


def test_empty_charts_say_what_they_wait_for():
    for build in (charts.loss_figure, charts.memory_figure, charts.throughput_figure):
        fig = build([])
        assert not fig.data and "Waiting" in fig.layout.annotations[0].text


def test_memory_prefers_gpu_readings_and_draws_the_total():
    records = [{"kind": "telemetry", "time": 10.0 + i, "process_rss_bytes": 5e8, "gpu_memory_used_bytes": 30e9,
                "gpu_memory_total_bytes": 80e9, "cuda_allocated_bytes": 20e9} for i in range(3)]
    fig = charts.memory_figure(records)
    assert fig.data[0].name == "GPU memory used" and list(fig.data[0].y) == [30.0] * 3
    assert list(fig.data[0].x) == [0.0, 1.0, 2.0]
    assert fig.data[1].name == "allocated by PyTorch"
    assert fig.layout.shapes[0].y0 == 80.0 and fig.layout.yaxis.title.text == "Memory (GB)"


def test_memory_on_cpu_uses_process_rss_and_names_the_far_total():
    records = [{"kind": "telemetry", "time": float(i), "process_rss_bytes": 6e8, "system_total_bytes": 16e9}
               for i in range(2)]
    fig = charts.memory_figure(records)
    assert list(fig.data[0].y) == [600.0, 600.0] and "16.0 GB" in fig.data[0].name
    assert not fig.layout.shapes


def test_overlays_one_colour_per_run():
    runs = {"a": [train(1, 5.0), {"kind": "eval", "step": 1, "eval_loss": 5.5}], "b": [train(1, 4.0)]}
    fig = charts.loss_overlay(runs)
    assert [t.name for t in fig.data] == ["a", "a (held-out)", "b"]
    assert fig.data[0].line.color == fig.data[1].marker.color != fig.data[2].line.color
    assert len(charts.throughput_overlay(runs).data) == 2
    assert not charts.memory_overlay(runs).data


def test_long_series_are_thinned_keeping_the_last_point():
    fig = charts.loss_figure([train(s, 1.0 / s, total=10_000) for s in range(1, 10_001)])
    assert len(fig.data[0].x) <= charts.MAX_POINTS and fig.data[0].x[-1] == 10_000
    assert fig.data[0].mode == "lines"


def test_a_trend_line_appears_once_there_are_enough_steps():
    few = charts.loss_figure([train(s, 5.0) for s in range(1, charts.SMOOTH_FROM)])
    assert [t.name for t in few.data] == ["training loss"]
    many = charts.loss_figure([train(s, 5.0 + (-1) ** s) for s in range(1, 101)])
    assert [t.name for t in many.data] == ["training loss", "trend (smoothed)"]
    assert charts.smooth([1.0, 2.0, 3.0, 4.0, 5.0], half_window=1) == [1.5, 2.0, 3.0, 4.0, 4.5]  # no lag
    middle = many.data[1].y[10:-10]
    assert max(middle) - min(middle) < 0.5  # the +-1 zigzag is mostly smoothed away (window of 5: +-0.2)


def test_thinning_keeps_a_spike_and_the_order_of_steps():
    records = [train(s, 3.0 if s == 4321 else 1.0 + 1e-5 * s, total=20_000) for s in range(1, 20_001)]
    fig = charts.loss_figure(records)
    xs, ys = list(fig.data[0].x), list(fig.data[0].y)
    assert len(xs) <= charts.MAX_POINTS and xs == sorted(xs) and xs[0] == 1 and xs[-1] == 20_000
    assert 4321 in xs and max(ys) == 3.0  # evenly strided points would have dropped the one diverging step
    assert min(ys) == ys[0]


def test_the_same_thing_has_the_same_colour_on_every_chart():
    """Pretrained / random and each precision keep their colours whatever the runs' order; other differences take
    the palette's colours in turn; the overlays draw each run in the colour given."""
    by_init = charts.run_colors({"b": {"init": "random"}, "a": {"init": "pretrained"}}, ["init"])
    assert by_init == {"b": charts.INIT_COLORS["random"], "a": charts.INIT_COLORS["pretrained"]}
    modes = {"x": {"precision": "bf16"}, "y": {"precision": "fp32"}, "z": {"precision": "fp16"}}
    assert charts.run_colors(modes, ["precision"]) == {m: charts.PRECISION_COLORS[c["precision"]]
                                                       for m, c in modes.items()}
    by_lr = charts.run_colors({"a": {"lr": 1e-3}, "b": {"lr": 3e-4}}, ["lr"])
    assert len(set(by_lr.values())) == 2
    same_init = charts.run_colors({"a": {"init": "random", "lr": 1}, "b": {"init": "random", "lr": 2}}, ["init"])
    assert len(set(same_init.values())) == 2  # two runs never share a colour
    runs = {"random weights": [train(1, 8.0)], "pretrained weights": [train(1, 5.0)]}
    colors = {"random weights": charts.INIT_COLORS["random"], "pretrained weights": charts.INIT_COLORS["pretrained"]}
    for build in (charts.loss_overlay, charts.throughput_overlay):
        assert {t.name: t.line.color for t in build(runs, colors).data} == colors


def test_runs_in_several_precisions_get_a_dash_each_so_coinciding_curves_stay_seen():
    modes = {"a": {"precision": "fp32"}, "b": {"precision": "bf16"}}
    assert charts.run_dashes(modes, ["precision"]) == {"a": "solid", "b": "dot"}
    assert charts.run_dashes({"a": {"init": "random"}, "b": {"init": "pretrained"}}, ["init"]) == {}
    runs = {"fp32": [train(1, 5.0), train(2, 4.9)], "bf16": [train(1, 5.0), train(2, 4.9)]}
    fig = charts.loss_overlay(runs, None, {"fp32": "solid", "bf16": "dot"})
    assert {t.name: t.line.dash for t in fig.data} == {"fp32": "solid", "bf16": "dot"}


def test_runs_shown_together_get_unique_labels(llmfs_home, seed):
    from app import tables
    from llmfs.runs import Run
    twins = [Run(llmfs_home / "runs" / seed(owner="l16")) for _ in range(2)]
    labels = tables.run_labels(twins)
    assert len(set(labels.values())) == 2  # the same settings: told apart by time, then by id
    assert all(label.startswith(time_owner) for label, time_owner in
               zip(labels.values(), [tables.run_label(r) for r in twins]))
    twins[0].rename("mine")
    assert tables.run_labels(twins)[twins[0].run_id] == "mine"


def test_a_persons_text_in_a_legend_is_not_read_as_html():
    assert charts.legend_text("<b>mine</b> & yours") == "&lt;b&gt;mine&lt;/b&gt; &amp; yours"


def test_a_single_memory_reading_is_charted_on_a_readable_time_axis():
    """A run too quick for more than one reading: one dot at 0 s, never an axis from -1 to 1 s."""
    fig = charts.memory_figure([{"kind": "telemetry", "time": 5.0, "process_rss_bytes": 300e6}])
    lo, hi = fig.layout.xaxis.range
    assert -0.05 < lo < 0 and hi >= 1
