"""The L12 page on the real llmfs-tiny: load and inspect, parity, vocabulary, layer map, pretrained vs random."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from apphelpers import unescaped
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpt2_tokenizer_template(tmp_path_factory):
    """GPT-2's tokenizer folder, built once for the module (several seconds) and copied into each test's home."""
    from llmfs.packaged import gpt2_tokenizer
    folder = tmp_path_factory.mktemp("gpt2-tok") / "gpt2-tokenizer"
    gpt2_tokenizer(folder)
    return folder


@pytest.fixture
def home_with_gpt2(llmfs_home, gpt2_tokenizer_template):
    shutil.copytree(gpt2_tokenizer_template, llmfs_home / "builtin" / "gpt2-tokenizer", copy_function=shutil.copy2)
    return llmfs_home


@pytest.fixture
def home_ready(home_with_default, gpt2_tokenizer_template):
    """The built llmfs-tiny and GPT-2's tokenizer, as `make run` leaves LLMFS_HOME."""
    shutil.copytree(gpt2_tokenizer_template, home_with_default / "builtin" / "gpt2-tokenizer",
                    copy_function=shutil.copy2)
    return home_with_default


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _frame(at: AppTest, column: str, kind: str = "dataframe"):
    """The one dataframe (or table) with `column`, as a pandas DataFrame."""
    (frame,) = [d.value for d in getattr(at, kind) if column in d.value.columns]
    return frame


def _open_loaded() -> AppTest:
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/l12_pretrained.py").run()
    at.button(key="l12.load").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_load_shows_architecture_vocab_and_layer_map(home_ready):
    at = _open_loaded()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "1,350,400" and metrics["Blocks"] == "4" and metrics["Context"] == "256"
    # vocabulary: 'dataclass' and two more become tokens; old tokens' logits do not move at all
    assert metrics["Vocabulary before"] == "4,096"
    assert int(metrics["Vocabulary after"].replace(",", "")) > 4096
    assert float(metrics["Old tokens' logits changed by"]) == 0.0
    # the checkpoint's names: GPT-2's Conv1D matrices come transposed, the tied head is not stored
    names = _frame(at, "in the Hugging Face checkpoint", kind="table").map(unescaped).set_index("our tensor")
    c_attn = names.loc["transformer.h.N.attn.c_attn.weight"]
    assert (c_attn["our shape"], c_attn["its shape there"]) == ("384 × 128", "128 × 384")
    assert c_attn["loading"].startswith("transposed")
    assert names.loc["transformer.wpe.weight", "loading"] == "as it is"
    assert names.loc["lm_head.weight", "loading"] == "tied: the same tensor as transformer.wte.weight"
    # llmfs-tiny's vocabulary against GPT-2's real one
    sizes = _frame(at, "padded to a multiple of 64")
    assert list(sizes["tokens"]) == ["4,096", "50,257"]
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


def test_parity_check_passes(home_ready):
    at = _open_loaded()
    at.button(key="l12.parity").click().run()
    assert not at.exception
    assert "The conversion is exact" in _texts(at.success)


def test_compare_button_queues_pretrained_and_random(home_ready):
    from llmfs.runs import Run
    at = _open_loaded()
    at.number_input(key="l12.steps").set_value(2).run()
    at.text_input(key="l12.both.run_name").input("first try").run()
    at.button(key="l12.both").click().run()
    assert not at.exception, [e.value for e in at.exception]
    pair = at.session_state["l12.compare"]
    runs = [Run(home_ready / "runs" / rid) for rid in pair]
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



# -- a Llama-family folder, and GPT-2's real tokenizer -----------------------------------------------------------
def _open_folder(folder) -> AppTest:
    """L12 with `folder` loaded: a path, or a built-in name."""
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/l12_pretrained.py").run()
    if str(folder) in ("llmfs-tiny", "smollm2-135m"):
        at.selectbox(key="l12.pick.model.kind").set_value(str(folder)).run()
    else:
        at.selectbox(key="l12.pick.model.kind").set_value("folder").run()
        at.text_input(key="l12.pick.model.path").input(str(folder)).run()
    at.button(key="l12.load").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_smollm2_by_name_parity_names_and_freezing(home_with_gpt2, fake_smollm2):
    """The built-in name smollm2-135m (a tiny Llama under it here): what it is, parity, the name map, freezing."""
    from llmfs.freeze import plan_freeze
    from llmfs.weights import load_folder
    at = _open_folder("smollm2-135m")
    assert "SmolLM2-135M-Instruct" in _texts(at.caption)   # the picker says what it is before Load
    (loaded,) = [i.value for i in at.info if "Loaded smollm2-135m" in i.value]
    assert "Apache-2.0" in loaded and "our from-scratch Llama" in loaded
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Blocks"], metrics["Query heads"], metrics["Key / value heads"]) == ("2", "4", "2")
    assert "Grouped-query attention**: 4 query heads share 2 key / value heads" in _texts(at.markdown)
    at.button(key="l12.parity").click().run()
    assert "transformers' LlamaForCausalLM" in _texts(at.success) and "exact" in _texts(at.success)
    names = _frame(at, "in the Hugging Face checkpoint", kind="table").map(unescaped)
    row = names[names["our tensor"] == "model.layers.N.self_attn.k_proj.weight"].iloc[0]
    assert row["in the Hugging Face checkpoint"] == "model.layers.N.self_attn.k_proj.weight"
    assert row["our shape"] == "16 × 32"   # 2 key / value heads of width 8: half the 32 of the queries
    assert set(names["our tensor"]) >= {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    # a freezing strategy's layer map and the table of every strategy
    at.selectbox(key="l12.freeze.freeze").set_value("train_top").run()
    assert not at.exception, [e.value for e in at.exception]
    plan = plan_freeze(load_folder(fake_smollm2), "train_top", n_layers=1)
    trained = {m.label: m.value for m in at.metric}["Parameters that train"]
    assert trained == f"{plan.trainable_params:,}" and 0 < plan.trainable_params < plan.total_params
    every = _frame(at, "what trains", kind="table")   # st.table reads Markdown: the names come escaped
    assert [unescaped(n) for n in every["strategy"]] == ["full", "linear_probe", "freeze_embeddings", "freeze_bottom",
                                                         "train_top", "bitfit", "gradual", "llrd"]
    assert list(every["parameters that train"])[4] == trained
    # the fine-tune form of step 4 follows the model loaded in step 1
    assert at.selectbox(key="l12.model.kind").value == "smollm2-135m"
    # pretrained vs random before any training: both answer, both are measured
    at.button(key="l12.both_ask").click().run()
    assert not at.exception, [e.value for e in at.exception]
    losses = {m.label: float(m.value) for m in at.metric if m.label.startswith("Held-out loss")}
    assert set(losses) == {"Held-out loss, pretrained weights", "Held-out loss, random weights"}


def test_vocabulary_against_gpt2s_real_tokenizer(home_with_gpt2, tiny_llama_folder):
    at = _open_folder(tiny_llama_folder)
    # step 4's form follows the folder loaded in step 1
    assert at.selectbox(key="l12.model.kind").value == "folder"
    assert at.text_input(key="l12.model.path").value == str(tiny_llama_folder)
    at.text_input(key="l12.tok_text").input("Hello world").run()
    codes = [c.value for c in at.code]
    assert "[15496, 995]" in codes and "[Hello][␣world]" in codes   # GPT-2's own ids, offline
    sizes = _frame(at, "padded to a multiple of 64")
    assert list(sizes["tokens"]) == ["300", "50,257"]
    assert sizes["padded to a multiple of 64"].iloc[1] == "50,304 (+47 unused rows)"
    origins = _frame(at, "its new row starts as")
    assert list(origins["id"]) == [15496, 995]
    at.button(key="l12.swap").click().run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    counts = [int(metrics[k].replace(",", "")) for k in ("Rows copied", "Rows from pieces", "Rows from the average")]
    assert sum(counts) == 50257 and counts[0] > 0
    # adding tokens works on a Llama too: old logits unchanged
    assert metrics["Vocabulary before"] == "300" and float(metrics["Old tokens' logits changed by"]) == 0.0
