"""The L15 page on the real llmfs-tiny: the live parameter count and memory estimate, a big model's estimate, a
LoRA run that lands in the adapter library, the library's rename / delete / upload, swapping adapters on one base,
and merging one into a model folder that loads."""

from __future__ import annotations

import json
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


def test_alpha_out_of_range_is_refused_in_place_and_start_stays_off(llmfs_home):
    """A bounded box silently kept its last value (-16 showed while the run used 16): now the value typed stays,
    a message under the field names the range, and Start stays off until it is fixed."""
    at = open_page()
    assert "Allowed: from 0.01 to 100,000" in at.number_input(key="l15.lora_alpha").help
    for bad in (-16.0, 0.0):
        at.number_input(key="l15.lora_alpha").set_value(bad).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.number_input(key="l15.lora_alpha").value == bad
        assert f"Alpha must be from 0.01 to 100,000 (you typed {bad:g})" in texts(at.error)
        assert at.button(key="l15.start").disabled
    assert "alpha / r =" not in texts(at.caption)  # no scale computed from a refused value
    at.number_input(key="l15.lora_alpha").set_value(32.0).run()
    assert "Alpha must be" not in texts(at.error) and not at.button(key="l15.start").disabled
    assert "alpha / r = **4**" in texts(at.caption)


def test_step_1_estimate_is_the_runs_estimate_for_the_same_settings(llmfs_home):
    """Step 1 shows, for the chosen method, exactly what the run will record (`memory.estimate_run` of the run's
    own TrainConfig), following the batch, sequence length and precision set in step 2."""
    from llmfs import memory
    from llmfs.bootstrap import TINY_CONFIG
    from llmfs.config import TrainConfig
    at = open_page()
    at.toggle(key="l15.quantize").set_value(True).run()
    at.number_input(key="l15.batch_size").set_value(4).run()
    at.number_input(key="l15.seq_len").set_value(64).run()
    cfg = TrainConfig(lora_rank=8, lora_targets="qkv", quantize="4bit", batch_size=4, seq_len=64)
    expected = memory.estimate_run(TINY_CONFIG, cfg).total_bytes
    assert metric(at, "Training memory, estimated") == memory.fmt_bytes(expected)
    assert "for a batch of 4 × 64 tokens in fp32 (set in step 2)" in texts(at.caption)


@pytest.mark.slow
def test_short_lora_run_saves_an_adapter_to_the_library(home_with_default):
    from llmfs.runs import Run
    at = open_page()
    assert "No adapters yet" in texts(at.info)
    for key, value in (("steps", 4), ("batch_size", 2), ("seq_len", 32), ("eval_batches", 1)):
        at.number_input(key=f"l15.{key}").set_value(value).run()
    at.toggle(key="l15.quantize").set_value(True).run()
    estimated = metric(at, "Training memory, estimated")  # step 1's figure for these settings
    at.button(key="l15.start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run = Run(home_with_default / "runs" / at.session_state["runs:l15"][-1])
    assert run.config()["lora_rank"] == 8 and run.config()["lora_targets"] == "qkv"
    assert run.config()["quantize"] == "4bit"
    deadline = time.time() + 120
    while run.state not in ("succeeded", "failed") and time.time() < deadline:
        time.sleep(0.5)
    assert run.state == "succeeded", run.status().get("error")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert metric(at, "Parameters that trained") == f"{expected_trainable(8, 'qkv'):,}"
    # one estimate for one set of settings: the run's summary shows step 1's figure, each measure says what it is
    assert metric(at, "Training memory, estimated") == estimated
    assert "Training memory, measured" in [m.label for m in at.metric]
    assert "Measured peak" not in [m.label for m in at.metric]
    assert "whole process at its largest (resident memory, RSS)" in texts(at.caption)
    # the adapter is called by what it is, records it, and names its base portably
    assert library_names(at) == ["rank 8 on qkv, 4-bit · llmfs-corpus · 4 steps"]
    table = next(d.value for d in at.dataframe if "name" in d.value.columns)
    assert table.loc[0, "base"] == "llmfs-tiny" and table.loc[0, "layers"] == "qkv"
    assert (table.loc[0, "data"], table.loc[0, "steps"], table.loc[0, "bits"]) == ("llmfs-corpus", 4, "4-bit")
    config = json.loads((run.path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "llmfs-tiny"
    meta = json.loads((run.path / "adapter" / ad.META_FILE).read_text())["training"]
    assert meta["base_path"] == str((home_with_default / "default" / "llmfs-tiny").resolve())
    assert meta["run_id"] == run.run_id and meta["final_loss"] == run.status()["result"]["final_loss"]


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


def outputs_of(at: AppTest) -> list[str]:
    """The swap view's outputs, as the HTML the page shows (escaped text, differing words in <mark>)."""
    return [h.proto.body for h in at.get("html") if "llmfs-output" in h.proto.body and "<style>" not in h.proto.body]


def test_swap_and_compare_shows_the_prompt_once_and_marks_what_differs(home_with_default):
    """Readable outputs (not disabled text boxes), the prompt once above them, the words that differ from the base
    model marked, every text escaped; labels by adapter, so a rename shows on outputs generated before it."""
    import html
    import re

    from app.text import md_escape
    info = make_adapter(home_with_default)
    at = open_page()
    prompt = "# Title <b>bold</b>\n===== *not markdown*"
    at.text_area(key="l15.swap.prompt").input(prompt).run()
    at.number_input(key="l15.swap.sample.max_new_tokens").set_value(8).run()
    at.button(key="l15.swap.go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [c.value for c in at.code].count(prompt) == 1  # the prompt, once, as text
    assert not [t for t in at.text_area if t.label != "Prompt"]  # no greyed-out text areas
    labels = [m.value for m in at.markdown if m.value.startswith("**") and ("Base model" in m.value or "·" in m.value)]
    assert labels == ["**Base model**", f"**A · {md_escape('my-adapter')}**"]
    base, adapted = outputs_of(at)
    assert "<mark>" not in base and "<mark>" in adapted  # the adapter's random B changes what is generated
    shown = html.unescape(re.sub(r"</?(mark|div)[^>]*>", "", adapted))
    assert "<" not in re.sub(r"</?(mark|div)[^>]*>", "", adapted)  # every character of the text escaped
    assert shown and "% of its words differ from the base model's" in texts(at.caption)
    ad.rename_adapter(info.id, "code *style*")
    at.run()
    assert f"**A · {md_escape('code *style*')}**" in [m.value for m in at.markdown]  # the new name, escaped
    assert outputs_of(at) == [base, adapted]


def test_a_rename_shows_in_every_picker(home_with_default):
    info = make_adapter(home_with_default)
    at = open_page()
    assert any("my-adapter" in o for o in at.selectbox(key="l15.swap.a").options)
    at.text_input(key=f"l15.lib.name.{info.id}").input("renamed one").run()
    at.button(key="l15.lib.rename").click().run()
    for picker in ("l15.lib.pick", "l15.swap.a", "l15.merge.pick"):
        box = at.selectbox(key=picker)
        assert any(o.startswith("renamed one") for o in box.options) and not any("my-adapter" in o for o in box.options)
        # the browser keeps the text of the option it shows: the page sends it the new one (else it would show the
        # old name, then send it back and match nothing)
        assert box.proto.set_value and box.proto.raw_value.startswith("renamed one"), picker
    assert at.text_input(key=f"l15.merge.name.{info.id}.renamed one").value == "renamed one-merged"


def test_library_says_what_a_run_trained_on(home_with_default):
    """A run's adapter is listed by what it is (rank, layers, data, steps), with its data, steps and losses."""
    from llmfs.runs import Run
    info = make_adapter(home_with_default)
    run = Run.create(home_with_default / "runs" / "20260101-000000-train-abc123", "train", {})
    folder = run.path / "adapter"
    import shutil
    shutil.copytree(info.path, folder)
    (folder / ad.META_FILE).unlink()
    ad.record_training(folder, base=str(home_with_default / "default" / "llmfs-tiny"),
                       data=str(home_with_default / "uploads" / "my_notes.txt"), steps=200, rank=4, alpha=8.0,
                       targets="qkv", final_loss=2.5, eval_loss=2.75, run_id=run.run_id)
    at = open_page()
    table = next(d.value for d in at.dataframe if "name" in d.value.columns)
    row = table[table["name"] == "rank 4 on qkv · my_notes.txt · 200 steps"].iloc[0]
    assert (row["base"], row["data"], row["steps"], row["eval_loss"], row["bits"]) == (
        "llmfs-tiny", "my_notes.txt", 200, 2.75, "full precision")
    assert "20260101-000000-train-abc123" not in list(table["name"])
    at.selectbox(key="l15.lib.pick").set_value(f"run:{run.run_id}").run()
    shown = texts(at.caption).replace("\\", "")   # the caption escapes Markdown (my_notes: no italics)
    assert ("Trained on my_notes.txt for 200 steps: rank 4 on qkv, alpha 8, base llmfs-tiny; training loss 2.500, "
            "held-out loss 2.750") in shown


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
    # offered as a download: a zip of the Hugging Face folder
    button = next(b for b in at.get("download_button") if b.key == "l15.merge.download")
    assert "Download the merged model" in button.proto.label


def test_merged_model_zip_holds_the_hf_folder(home_with_default, tmp_path):
    import io
    import zipfile

    from llmfs.adapting import merge_adapter, zip_model_folder
    from llmfs.weights import load_hf_folder
    info = make_adapter(home_with_default)
    out = merge_adapter(info.path, tmp_path / "merged")
    with zipfile.ZipFile(io.BytesIO(zip_model_folder(out))) as zf:
        assert "merged/config.json" in zf.namelist()
        zf.extractall(tmp_path / "unzipped")
    assert load_hf_folder(tmp_path / "unzipped" / "merged") is not None


# -- own text (issue 16) -----------------------------------------------------------------------------------------
OWN_TEXT = ("My grandmother kept bees behind the old barn. Every summer she lifted the frames out one by one and held "
            "them up to the light.\n\nThe honey was dark in the years when the heather flowered late, and pale when "
            "the clover came first.\n\nShe wrote the colour of each harvest in a small green notebook.")


def test_own_text_waits_without_an_error_then_shows_its_counts(home_with_default):
    from llmfs.data.text import summarize
    from llmfs.train import fitted_seq_len
    at = open_page()
    at.selectbox(key="l15.data.kind").set_value("upload").run()
    assert not at.error, texts(at.error)                  # nothing uploaded yet: nothing was done wrong
    assert "Choose a file to train on" in texts(at.caption) and at.button(key="l15.start").disabled

    at.file_uploader(key="l15.data.upload").set_value(("bad.txt", b"caf\xe9\n", "text/plain")).run()
    assert "invalid UTF-8" in texts(at.error) and "empty" not in texts(at.error)   # the refusal, and only it
    assert at.button(key="l15.start").disabled

    at.file_uploader(key="l15.data.upload").set_value(("bees.txt", OWN_TEXT.encode(), "text/plain")).run()
    assert not at.error, texts(at.error)
    counts = summarize(str(home_with_default / "uploads" / "bees.txt"), "llmfs-tiny")
    assert (f"1 document, {len(OWN_TEXT):,} characters: {counts.train_tokens:,} tokens to train on, "
            f"{counts.heldout_tokens} held out") in texts(at.caption)
    fit = fitted_seq_len(counts.train_tokens, 128)
    assert fit < 128
    assert f"Your text has {counts.train_tokens} tokens to train on: sequence length {fit} is used instead of 128." \
        in texts(at.info)
    assert not at.button(key="l15.start").disabled

    at.number_input(key="l15.seq_len").set_value(counts.train_tokens).run()   # one's own length: kept, or refused
    assert f"Set a sequence length of {fit} or less" in texts(at.error) and at.button(key="l15.start").disabled


def test_step_1_estimate_follows_the_sequence_short_text_gets(home_with_default):
    """Short text trains on shorter sequences (`recipes.fit_to_data`, in the run's config): the step 1 estimate
    is for what the run will do, so it equals the estimate the run records."""
    from llmfs import memory
    from llmfs.bootstrap import TINY_CONFIG
    from llmfs.config import TrainConfig
    from llmfs.data.text import summarize
    from llmfs.train import fitted_seq_len
    at = open_page()
    at.selectbox(key="l15.data.kind").set_value("upload").run()
    at.file_uploader(key="l15.data.upload").set_value(("bees.txt", OWN_TEXT.encode(), "text/plain")).run()
    counts = summarize(str(home_with_default / "uploads" / "bees.txt"), "llmfs-tiny")
    fit = fitted_seq_len(counts.train_tokens, 128)
    cfg = TrainConfig(lora_rank=8, lora_targets="qkv", seq_len=fit)
    expected = memory.estimate_run(TINY_CONFIG, cfg).total_bytes
    assert expected != memory.estimate_run(TINY_CONFIG, cfg.replace(seq_len=128)).total_bytes
    assert metric(at, "Training memory, estimated") == memory.fmt_bytes(expected)
    assert f"for a batch of 8 × {fit} tokens" in texts(at.caption)


def test_an_upload_is_kept_when_the_person_leaves_the_page_and_comes_back(home_with_default):
    """A file uploader starts empty on a page opened again: the file saved from it earlier in the session is used,
    said so, until another is uploaded or the person lets it go."""
    at = open_page()
    at.selectbox(key="l15.data.kind").set_value("upload").run()
    at.file_uploader(key="l15.data.upload").set_value(("bees.txt", OWN_TEXT.encode(), "text/plain")).run()
    at.number_input(key="l15.steps").set_value(37).run()
    at.switch_page("pages/runs.py").run()
    at.switch_page("pages/l15_lora.py").run()
    assert not at.exception
    assert at.number_input(key="l15.steps").value == 37 and at.selectbox(key="l15.data.kind").value == "upload"
    assert "Using bees.txt, which you uploaded earlier in this session" in apphelpers.unescaped(texts(at.caption))
    assert "tokens to train on" in texts(at.caption) and not at.button(key="l15.start").disabled
    at.button(key="l15.data.forget").click().run()
    assert "Choose a file to train on" in texts(at.caption) and at.button(key="l15.start").disabled
