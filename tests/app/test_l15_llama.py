"""The L15 page on a Llama (a tiny one, as smollm2-135m is one): the layer controls in the model's own module names
(qkv = q_proj, k_proj, v_proj; mlp_in = gate_proj + up_proj), the count and the memory estimate from its real
shapes, then a LoRA run on it whose adapter is swapped, mixed with another and merged into a folder transformers
loads as a LlamaForCausalLM."""

from __future__ import annotations

import json
import time
from pathlib import Path

import apphelpers  # tests/app is on sys.path
import pytest
import torch
from streamlit.testing.v1 import AppTest

from llmfs import adapters as ad

PAGE = "pages/l15_lora.py"
texts = apphelpers.texts
# conftest's tiny Llama: hidden 32, key / value width 16 (2 of 4 heads), MLP 64, 2 blocks, vocabulary 300
HIDDEN, KV, MLP, VOCAB = 32, 16, 64, 300


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def open_on(folder: Path) -> AppTest:
    """The page with a model folder picked in step 1 (as "A folder on this machine")."""
    at = apphelpers.open_page(PAGE, timeout=180)
    at.selectbox(key="l15.model.kind").set_value("folder").run()
    at.text_input(key="l15.model.path").input(str(folder)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def layer_caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if " blocks; bold: picked):" in c.value)


def modules_of(caption: str) -> dict[str, tuple[bool, str]]:
    """The caption's list: lesson name -> (picked, the module names it shows)."""
    out = {}
    for line in caption.splitlines():
        if line.startswith("- "):
            name, rest = line[2:].split(", ", 1)
            out[name.strip("*")] = (name.startswith("**"), rest.rsplit(": ", 1)[-1])
    return out


def test_a_llamas_layers_are_named_by_its_own_modules_and_counted_from_its_shapes(llmfs_home, tiny_llama_folder):
    from llmfs import memory
    from llmfs.config import TrainConfig
    at = open_on(tiny_llama_folder)
    caption = layer_caption(at)
    assert caption.startswith("In **tiny-llama** (a Llama, 2 blocks; bold: picked):")
    assert modules_of(caption) == {"qkv": (True, "`q_proj`, `k_proj`, `v_proj`"), "attn_proj": (False, "`o_proj`"),
                                   "mlp_in": (False, "`gate_proj`, `up_proj`"), "mlp_out": (False, "`down_proj`"),
                                   "lm_head": (False, "`lm_head`")}
    assert "- **qkv**, attention's query, key and value projections" in caption   # the words, true of both families
    assert "adapters on **6** linear layers" in caption and "shares its matrix" not in caption   # untied head
    # r * (in + out): q (32 -> 32), k and v (32 -> 16: grouped-query attention), in each of 2 blocks
    qkv = 2 * 8 * ((HIDDEN + HIDDEN) + 2 * (HIDDEN + KV))
    assert int(metric(at, "Parameters that train").replace(",", "")) == qkv
    at.multiselect(key="l15.lora_targets").set_value(["qkv", "mlp_in"]).run()
    assert modules_of(layer_caption(at))["mlp_in"] == (True, "`gate_proj`, `up_proj`")
    assert "adapters on **10** linear layers" in layer_caption(at)
    assert int(metric(at, "Parameters that train").replace(",", "")) == qkv + 2 * 2 * 8 * (HIDDEN + MLP)
    # the estimate is the run's, from the folder's config.json
    cfg = TrainConfig(model=str(tiny_llama_folder), lora_rank=8, lora_targets="qkv,mlp_in")
    expected = memory.estimate_run(str(tiny_llama_folder), cfg)
    assert expected.trainable_params == qkv + 2 * 2 * 8 * (HIDDEN + MLP)
    assert metric(at, "Training memory, estimated") == memory.fmt_bytes(expected.total_bytes)


def test_a_tied_head_is_said_to_be_shared(llmfs_home, tmp_path, save_tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM
    folder = tmp_path / "tied-llama"
    LlamaForCausalLM(LlamaConfig(hidden_size=HIDDEN, intermediate_size=MLP, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, vocab_size=VOCAB,
                                 tie_word_embeddings=True)).save_pretrained(folder)
    save_tiny_tokenizer(folder, vocab_size=VOCAB)
    at = open_on(folder)
    at.multiselect(key="l15.lora_targets").set_value(["qkv", "lm_head"]).run()
    assert "shares its matrix with the word embeddings" in layer_caption(at)
    assert modules_of(layer_caption(at))["lm_head"] == (True, "`lm_head`")


def test_gpt2s_layers_are_named_by_its_modules(llmfs_home):
    at = apphelpers.open_page(PAGE, timeout=120)
    caption = layer_caption(at)
    assert caption.startswith("In **llmfs-tiny** (a GPT-2, 4 blocks; bold: picked):")
    assert modules_of(caption) == {"qkv": (True, "`attn.c_attn`"), "attn_proj": (False, "`attn.c_proj`"),
                                   "mlp_in": (False, "`mlp.c_fc`"), "mlp_out": (False, "`mlp.c_proj`"),
                                   "lm_head": (False, "`lm_head`")}
    assert "adapters on **4** linear layers" in caption
    # the box itself holds the lesson's names; its help says what each is
    box = at.multiselect(key="l15.lora_targets")
    assert box.options == ["qkv", "attn_proj", "mlp_in", "mlp_out", "lm_head"]
    assert "- **mlp_in**: the MLP's widening layers" in box.help


def _second_adapter(base: Path, home: Path) -> ad.AdapterInfo:
    """Another adapter on the same base (qkv and the MLP, B drawn at random so it changes the outputs), added to
    the library as an upload would be."""
    from llmfs import lora
    from llmfs.llama import load_llama
    model = load_llama(base)
    lora.add_adapter(model, rank=4, alpha=8.0, targets="qkv,mlp_in,mlp_out", model_type="llama", seed=0)
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in lora.lora_layers(model).values():
            layer.lora_B["default"].weight.normal_(0, 0.5)
    folder = lora.save_adapter(model, home / "src-adapter", alpha=8.0, base_model=str(base.resolve()),
                               targets=lora.target_modules("qkv,mlp_in,mlp_out", "llama"))
    return ad.import_folder(folder, name="second")


def outputs_of(at: AppTest) -> list[str]:
    return [h.proto.body for h in at.get("html") if "llmfs-output" in h.proto.body and "<style>" not in h.proto.body]


@pytest.mark.slow
def test_lora_run_on_a_llama_then_swap_mix_and_merge(home_with_default, tiny_llama_folder):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmfs.runs import Run
    at = open_on(tiny_llama_folder)
    for key, value in (("steps", 4), ("batch_size", 2), ("seq_len", 32), ("eval_batches", 1), ("lr", 0.05),
                       ("warmup_steps", 0)):
        at.number_input(key=f"l15.{key}").set_value(value).run()
    estimated = metric(at, "Training memory, estimated")
    at.button(key="l15.start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run = Run(home_with_default / "runs" / at.session_state["runs:l15"][-1])
    assert run.config()["model"] == str(tiny_llama_folder)
    deadline = time.time() + 240
    while run.state not in ("succeeded", "failed") and time.time() < deadline:
        time.sleep(0.5)
    assert run.state == "succeeded", run.status().get("error")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert metric(at, "Parameters that trained") == f"{2 * 8 * ((HIDDEN + HIDDEN) + 2 * (HIDDEN + KV)):,}"
    assert metric(at, "Training memory, estimated") == estimated   # the run recorded step 1's figure
    assert "via llmfs.lora" in (run.path / "log.txt").read_text()   # our LoRA on our Llama, not PEFT's
    # text generated before and after training, side by side
    assert "Text before and after training" in texts(at.markdown)
    assert run.status()["result"]["samples"]
    # in the library, by what it is, its base named as the folder
    table = next(d.value for d in at.dataframe if "name" in d.value.columns)
    assert list(table["name"]) == ["rank 8 on qkv · llmfs-corpus · 4 steps"]
    assert table.loc[0, "base"] == "tiny-llama" and table.loc[0, "layers"] == "qkv"
    adapter = json.loads((run.path / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["k_proj", "q_proj", "v_proj"]

    # swap and mix: the run's adapter (A) and another (B) on one loaded Llama
    second = _second_adapter(tiny_llama_folder, home_with_default)
    at.run()
    a_id = f"run:{run.run_id}"
    at.selectbox(key="l15.swap.a").set_value(a_id).run()
    at.selectbox(key="l15.swap.b").set_value(second.id).run()
    at.number_input(key="l15.swap.sample.max_new_tokens").set_value(8).run()
    at.button(key="l15.swap.go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, texts(at.error)
    labels = [m.value for m in at.markdown if m.value.startswith("**") and ("Base model" in m.value
                                                                          or " · " in m.value)]
    assert labels[0] == "**Base model**" and labels[1].startswith("**A · ") and labels[2] == "**B · second**"
    assert labels[3] == "**Mix · 50% A + 50% B**"
    outputs = outputs_of(at)[-4:]   # after the run's own before / after texts
    assert "<mark>" not in outputs[0] and "<mark>" in outputs[2]   # B's random update changes what is generated

    # merge the run's adapter: a plain Llama folder transformers loads, with the adapted model's logits
    at.selectbox(key="l15.merge.pick").set_value(a_id).run()
    at.button(key="l15.merge.go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    done = at.session_state["l15.merge.done"]
    assert done[0] == "success", done
    merged = Path(done[1])
    assert json.loads((merged / "config.json").read_text())["model_type"] == "llama"
    hf = AutoModelForCausalLM.from_pretrained(merged).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_folder),
                                    str(run.path / "adapter")).eval()
    ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (hf(ids).logits - ref(ids).logits).abs().max() < 1e-4


def test_smollm2_by_its_name_before_and_after_it_is_unpacked(llmfs_home, tiny_llama_folder):
    """The built-in name: before its first use there is no config.json to read (the page says when the estimate
    comes, not to paste one); once unpacked (here a tiny Llama under its name) the layers are its own."""
    import shutil

    from llmfs.packaged import SMOLLM2, folder_of
    at = apphelpers.open_page(PAGE, timeout=120)
    at.selectbox(key="l15.model.kind").set_value("smollm2-135m").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "smollm2-135m is unpacked from its package the first time it is used" in texts(at.info)
    assert "paste its config.json" not in texts(at.info)
    shutil.copytree(tiny_llama_folder, folder_of(SMOLLM2))   # unpacked: conftest's fake_smollm2 does the same
    (folder_of(SMOLLM2) / "llmfs_source.json").write_text('{"name": "smollm2-135m", "fake": "a tiny Llama"}')
    at.run()
    assert layer_caption(at).startswith("In **smollm2-135m** (a Llama, 2 blocks; bold: picked):")
    assert modules_of(layer_caption(at))["mlp_in"] == (False, "`gate_proj`, `up_proj`")
    assert "Training memory, estimated" in [m.label for m in at.metric]
