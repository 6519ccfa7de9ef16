"""The L15 page on the real llmfs-tiny: the live parameter count and memory estimate, a big model's estimate, a
LoRA run that lands in the adapter library, the library's rename / delete / upload, swapping adapters on one base,
and merging one into a model folder that loads."""

from __future__ import annotations

import time
from pathlib import Path

import apphelpers  # tests/app is on sys.path
import pytest
from streamlit.testing.v1 import AppTest

from llmfs import adapters as ad

REPO = Path(__file__).resolve().parents[2]
PAGE = "pages/l15_lora.py"


def open_page() -> AppTest:
    return apphelpers.open_page(PAGE, timeout=120)


texts = apphelpers.texts


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def library_names(at: AppTest) -> list[str]:
    frames = [d.value for d in at.dataframe if "name" in d.value.columns]
    return list(frames[0]["name"]) if frames else []


def expected_trainable(rank: int, targets: str) -> int:
    """r * (in + out) over llmfs-tiny's linear layers the targets name, from the model's shapes alone."""
    from llmfs.bootstrap import TINY_CONFIG
    from llmfs.lora import matches, target_modules
    from llmfs.memory import linear_shapes
    suffixes = target_modules(targets)
    return sum(rank * (i + o) for name, i, o in linear_shapes(TINY_CONFIG) if matches(name, suffixes))


def make_adapter(home: Path, name: str = "my-adapter") -> ad.AdapterInfo:
    """A rank-4 qkv adapter on the built llmfs-tiny, B drawn at random (not zero) so it changes the outputs, added
    to the library as an upload would be; its base is the built-in model's folder, as a training run records it."""
    import torch

    from llmfs import lora
    from llmfs.bootstrap import DefaultAssets
    from llmfs.weights import load_pretrained
    model_dir = DefaultAssets(home / "default").model_dir.resolve()
    model, _ = load_pretrained(str(model_dir))
    lora.add_adapter(model, rank=4, alpha=8.0, targets="qkv", seed=0)
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in lora.lora_layers(model).values():
            layer.lora_B["default"].weight.normal_(0, 0.5)
    folder = lora.save_adapter(model, home / "src-adapter", alpha=8.0, base_model=str(model_dir),
                               targets=lora.target_modules("qkv"))
    return ad.import_folder(folder, name=name)


def test_rank_and_layers_change_the_trainable_count(llmfs_home):
    at = open_page()
    assert "More tools for this lesson are being built" not in texts(at.info)
    assert int(metric(at, "Parameters that train").replace(",", "")) == expected_trainable(8, "qkv") == 16_384
    at.select_slider(key="l15.lora_rank").set_value(16).run()
    assert int(metric(at, "Parameters that train").replace(",", "")) == expected_trainable(16, "qkv")
    at.multiselect(key="l15.lora_targets").set_value(["qkv", "mlp_in"]).run()
    assert not at.exception
    count = int(metric(at, "Parameters that train").replace(",", ""))
    assert count == expected_trainable(16, "qkv,mlp_in") == 16 * 4 * ((128 + 384) + (128 + 512))
    charts = [c for c in at.get("plotly_chart")]
    assert charts, "the memory chart of full fine-tune vs LoRA vs QLoRA"
    at.multiselect(key="l15.lora_targets").set_value([]).run()
    assert "Pick at least one layer" in texts(at.warning) and at.button(key="l15.start").disabled


def test_big_model_shows_4bit_weights_and_refuses_bad_json(llmfs_home):
    at = open_page()
    at.selectbox(key="l15.big.pick").set_value("Llama-2-7B").run()
    value, unit = metric(at, "Weights, 4-bit (QLoRA)").split()
    assert unit == "GB" and 3.5 <= float(value) <= 4.2
    assert metric(at, "Weights, 16-bit") == "13.5 GB"
    assert "from 14 GB to 4 GB" in texts(at.info)
    at.selectbox(key="l15.big.pick").set_value("Paste a config.json").run()
    at.text_area(key="l15.big.json").input('{"model_type": "llama", "hidden_size": 64,').run()
    assert not at.exception
    assert "not valid JSON" in texts(at.error)


@pytest.mark.slow
def test_short_lora_run_saves_an_adapter_to_the_library(home_with_default):
    from llmfs.runs import Run
    at = open_page()
    assert "No adapters yet" in texts(at.info)
    for key, value in (("steps", 4), ("batch_size", 2), ("seq_len", 32), ("eval_batches", 1)):
        at.number_input(key=f"l15.{key}").set_value(value).run()
    at.button(key="l15.start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run = Run(home_with_default / "runs" / at.session_state["runs:l15"][-1])
    assert run.config()["lora_rank"] == 8 and run.config()["lora_targets"] == "qkv"
    deadline = time.time() + 120
    while run.state not in ("succeeded", "failed") and time.time() < deadline:
        time.sleep(0.5)
    assert run.state == "succeeded", run.status().get("error")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert metric(at, "Parameters that trained") == f"{expected_trainable(8, 'qkv'):,}"
    assert "run's own process" in texts(at.caption)
    assert library_names(at) == [run.run_id]
    table = next(d.value for d in at.dataframe if "name" in d.value.columns)
    assert table.loc[0, "base"] == "llmfs-tiny" and table.loc[0, "layers"] == "qkv"


def test_library_renames_deletes_and_imports(home_with_default):
    info = make_adapter(home_with_default)
    zipped = ad.export_zip(info.id)
    at = open_page()
    assert library_names(at) == ["my-adapter"]
    at.text_input(key=f"l15.lib.name.{info.id}").input("code-style").run()
    at.button(key="l15.lib.rename").click().run()
    assert library_names(at) == ["code-style"] and "Renamed to **code-style**" in texts(at.success)
    at.button(key="l15.lib.delete").click().run()
    assert "cannot be undone" in texts(at.warning) and library_names(at) == ["code-style"]
    at.button(key="l15.lib.yes").click().run()
    assert not at.exception
    assert library_names(at) == [] and "No adapters yet" in texts(at.info)
    at.file_uploader(key="l15.lib.upload").set_value(("shared.zip", zipped, "application/zip")).run()
    assert library_names(at) == ["shared"] and "Added **shared**" in texts(at.success)
    at.file_uploader(key="l15.lib.upload").set_value(("junk.zip", b"not a zip", "application/zip")).run()
    assert "junk.zip** was not added" in texts(at.error) and library_names(at) == ["shared"]


def test_swap_and_compare_shows_base_and_adapter_side_by_side(home_with_default):
    make_adapter(home_with_default)
    at = open_page()
    at.number_input(key="l15.swap.sample.max_new_tokens").set_value(8).run()
    at.button(key="l15.swap.go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    outputs = {t.label: t.value for t in at.text_area if t.label != "Prompt"}
    assert list(outputs) == ["Base model", "A · my-adapter"]
    assert outputs["Base model"] != outputs["A · my-adapter"]  # the adapter's random B changes what is generated


def test_merge_writes_a_model_folder_that_loads(home_with_default):
    from llmfs.weights import load_hf_folder
    make_adapter(home_with_default)
    at = open_page()
    at.button(key="l15.merge.go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    folder = home_with_default / "models" / "my-adapter-merged"
    assert str(folder) in texts(at.success)
    model = load_hf_folder(folder)
    assert not any("lora" in name for name, _ in model.named_parameters())
