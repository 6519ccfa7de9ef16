"""The L12 page on the real llmfs-tiny: load and inspect, parity, vocabulary, layer map, pretrained vs random."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _open_loaded() -> AppTest:
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/l12_pretrained.py").run()
    at.button(key="l12.load").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_load_shows_architecture_vocab_and_layer_map(home_with_default):
    at = _open_loaded()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "1,350,400" and metrics["Blocks"] == "4" and metrics["Context"] == "256"
    # vocabulary: 'dataclass' and two more become tokens; old tokens' logits do not move at all
    assert metrics["Vocabulary before"] == "4,096"
    assert int(metrics["Vocabulary after"].replace(",", "")) > 4096
    assert float(metrics["Old tokens' logits changed by"]) == 0.0
    # layer map for the default strategy: everything trains
    assert metrics["Parameters that train"] == "1,350,400"
    at.selectbox(key="l12.freeze.freeze").set_value("bitfit").run()
    trained = int({m.label: m.value for m in at.metric}["Parameters that train"].replace(",", ""))
    assert 0 < trained < 20_000  # biases and LayerNorms only
    # the fine-tune form no longer shows the freezing controls: step 3 chose them, and it says which it uses
    assert not [w for w in at.selectbox if w.key == "l12.freeze"]
    chosen = [i.value for i in at.info if "Which layers train" in i.value]
    assert chosen and all("bitfit" in c for c in chosen)  # step 4's form, and step 5's comparison, which uses it
    assert "stay random" in _texts(at.warning)  # the random-weights run would keep its frozen parts random


def test_parity_check_passes(home_with_default):
    at = _open_loaded()
    at.button(key="l12.parity").click().run()
    assert not at.exception
    assert "The conversion is exact" in _texts(at.success)


def test_compare_button_queues_pretrained_and_random(home_with_default):
    from llmfs.runs import Run
    at = _open_loaded()
    at.number_input(key="l12.steps").set_value(2).run()
    at.text_input(key="l12.both.run_name").input("first try").run()
    at.button(key="l12.both").click().run()
    assert not at.exception, [e.value for e in at.exception]
    pair = at.session_state["l12.compare"]
    runs = [Run(home_with_default / "runs" / rid) for rid in pair]
    assert [r.config()["init"] for r in runs] == ["pretrained", "random"]
    assert {r.config()["steps"] for r in runs} == {2}
    assert [r.name for r in runs] == ["first try · pretrained weights", "first try · random weights"]
    assert at.text_input(key="l12.both.run_name").value == ""  # the next pair does not take the name by mistake


def test_whitespace_tokens_are_shown_visibly():
    from app.l12_view import shown_token
    assert [shown_token(t) for t in [" the", "\n", "\n\n", "\t", " ", "", "a\x0bb", "x"]] == \
        ["␣the", "⏎", "⏎⏎", "⇥", "␣", "(empty)", "a\\x0bb", "x"]


def test_pretrained_and_random_runs_are_labelled_and_coloured_by_their_weights(llmfs_home, seed):
    from app import charts, tables
    from llmfs.runs import Run
    runs = [Run(llmfs_home / "runs" / seed(owner="l12", init=init)) for init in ("random", "pretrained")]
    labels, colors = tables.run_labels(runs), tables.run_colors(runs)
    assert [labels[r.run_id] for r in runs] == ["random weights", "pretrained weights"]
    assert [colors[r.run_id] for r in runs] == [charts.INIT_COLORS["random"], charts.INIT_COLORS["pretrained"]]

