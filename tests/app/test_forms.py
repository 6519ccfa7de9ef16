"""The training forms as a person meets them: ranges the chosen model really allows, refusals in place with the
words the form shows, settings kept when the person leaves a page and comes back, and messages quoting data shown
as written."""

from __future__ import annotations

import apphelpers  # tests/app is on sys.path
import pytest

from app.text import md_escape, one_line
from llmfs.config import ConfigError, TrainConfig

L15 = "pages/l15_lora.py"


def number(at, label, key_prefix="l15."):
    return next(n for n in at.number_input if n.label == label and n.key.startswith(key_prefix))


@pytest.mark.slow
def test_sequence_length_shows_and_checks_the_models_context(home_with_default):
    at = apphelpers.open_page(L15, timeout=120)
    seq = number(at, "Sequence length", "l15.seq_len")
    assert "from 2 to 256 (the model's context length)" in seq.help    # llmfs-tiny's, not the config's 131,072
    seq.set_value(1000).run()
    errors = apphelpers.texts(at.error)
    assert "Sequence length must be between 2 and 256, the model's context length (got 1000)" in errors
    assert "seq\\_len" not in errors and "seq_len" not in errors
    assert next(b for b in at.button if b.key == "l15.start").disabled   # refused in place, not on Start


@pytest.mark.slow
def test_settings_survive_leaving_the_page(home_with_default):
    at = apphelpers.open_page(L15, timeout=120)
    number(at, "Training steps").set_value(37).run()
    at.switch_page("pages/home.py").run()
    at.switch_page(L15).run()
    assert number(at, "Training steps").value == 37


def test_range_messages_use_the_label_people_see():
    with pytest.raises(ConfigError) as err:
        TrainConfig(batch_size=0)
    assert str(err.value).startswith("Batch size must be between 1 and 4096")


def test_model_limits_read_from_the_config_alone(home_with_default, tiny_hf_folder):
    from llmfs.weights import model_limits
    assert model_limits("llmfs-tiny") == {"seq_len": 256, "freeze_layers": 4}
    assert model_limits(str(tiny_hf_folder)) == {"seq_len": 64, "freeze_layers": 2}
    assert model_limits("no/such-model") == {}


def test_markdown_in_data_is_shown_as_written():
    from markdown_it import MarkdownIt
    text = "Title\n=====\n`x` _y_ **z** :red[w] $1$ <b>hi</b> # no heading"
    html = MarkdownIt("commonmark").render(md_escape(text))
    assert "<h1>" not in html and "<code>" not in html and "<em>" not in html and "<strong>" not in html
    assert "<b>" not in html and "=====" in html and "`x` _y_ **z**" in html
    assert one_line("a\n\nb " * 100, 20).endswith("…") and "\n" not in one_line("a\nb")


def test_smollm2_picked_offers_quick_cpu_settings_and_the_expected_time(home_with_default, fake_smollm2):
    from llmfs.timing import QUICK_CPU
    at = apphelpers.open_page(L15, timeout=120)
    at.selectbox(key="l15.model.kind").set_value("smollm2-135m").run()
    captions = [apphelpers.unescaped(str(c.value)) for c in at.caption]
    assert any(c.startswith("SmolLM2-135M-Instruct (Hugging Face, Apache-2.0)") for c in captions)
    quick = next(b for b in at.button if b.key == "l15.quick")
    quick.click().run()
    assert number(at, "Training steps").value == QUICK_CPU["smollm2-135m"]["steps"]
    assert number(at, "Sequence length", "l15.seq_len").value == QUICK_CPU["smollm2-135m"]["seq_len"]
    assert not any(b.key == "l15.quick" for b in at.button)   # already quick: no second offer
    expected = next(c for c in (apphelpers.unescaped(str(c.value)) for c in at.caption)
                    if c.startswith("**Expected time:"))
    assert f"({QUICK_CPU['smollm2-135m']['steps']} steps at about" in expected and "GFLOP per step (LoRA)" in expected
