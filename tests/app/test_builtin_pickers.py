"""Every model picker offers both built-in models, smollm2-135m with a label that says what it is; tables name them
by their built-in names."""

from __future__ import annotations

import pytest
from apphelpers import open_page


@pytest.mark.parametrize("page,key", [("pages/l12_pretrained.py", "l12.pick"), ("pages/l15_lora.py", "l15"),
                                      ("pages/l16_precision.py", "l16")])
def test_form_pickers_offer_smollm2(llmfs_home, page, key):
    at = open_page(page)
    kind = at.selectbox(key=f"{key}.model.kind")
    assert kind.options[:2] == ["llmfs-tiny (built in, a tiny 1.35M GPT-2, works offline)",
                                "smollm2-135m (built in, a real 135M chat model, works offline)"]


def test_evaluation_picker_offers_smollm2(llmfs_home):
    at = open_page("pages/l14_eval.py")
    models = at.multiselect(key="l14.models")
    assert models.options[:2] == ["llmfs-tiny (built in, a tiny 1.35M GPT-2, works offline)",
                                  "smollm2-135m (built in, a real 135M chat model, works offline)"]
    assert models.value == ["llmfs-tiny"]
    models.set_value(["llmfs-tiny", "smollm2-135m"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="l14.models").value == ["llmfs-tiny", "smollm2-135m"]


def test_tables_call_the_built_in_models_by_name(llmfs_home):
    from app.choices import model_name
    from llmfs.packaged import SMOLLM2, folder_of
    assert model_name("smollm2-135m") == "smollm2-135m" and model_name("llmfs-tiny") == "llmfs-tiny"
    assert model_name(str(folder_of(SMOLLM2))) == "smollm2-135m"   # its unpacked folder, by the folder's name
