"""Models the pages cache are shared by every session of the server: nothing a lesson does may change them. A
training job on the same model loads its own copy; the L15 swap view and the L16 demonstration leave the shared
weights exactly as they were."""

from __future__ import annotations

import torch

from llmfs.config import TrainConfig
from llmfs.recipes import submit_train
from llmfs.runner import default_manager


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(model, snap) -> bool:
    state = model.state_dict()
    return state.keys() == snap.keys() and all(torch.equal(state[k], snap[k]) for k in snap)


def test_cached_models_are_never_changed(home_with_default, tmp_path):
    from app import l12_view
    from llmfs import lora
    from llmfs.adapting import attach, compare_generations
    from llmfs.generate import SampleConfig
    from llmfs.precision import underflow_demo

    shared, tokenizer, _ = l12_view.loaded("llmfs-tiny")
    before = _snapshot(shared)

    # 1. a LoRA training job and a full fine-tune on the same model, through the runner
    jobs = default_manager(telemetry_interval=60)
    try:
        for cfg in (TrainConfig(steps=3, batch_size=2, seq_len=32, eval_every=0, lora_rank=4),
                    TrainConfig(steps=3, batch_size=2, seq_len=32, eval_every=0)):
            rid = submit_train(jobs, cfg)
            assert jobs.wait(rid, 180) == "succeeded", jobs.get(rid).status().get("traceback")
        adapter = jobs.get(jobs.list_runs()[1].run_id).path / "adapter"
    finally:
        jobs.shutdown()
    assert _same(shared, before)

    # 2. L16's demonstration computes gradients on the shared model's weights (on a copy)
    underflow_demo(shared, torch.randint(0, 4000, (2, 17)))
    assert _same(shared, before) and all(p.grad is None for p in shared.parameters())

    # 3. L15's swap view: adapters switched on a base of its own, which it gives back as it found it
    adapted = attach("llmfs-tiny", {"A": adapter})
    base_state = {k: v for k, v in _snapshot(adapted.model).items() if "lora_" not in k}
    compare_generations(adapted, "The list", {"base": None, "A": "A", "half": {"A": 0.5}},
                        SampleConfig(max_new_tokens=4))
    assert lora.active_adapters(adapted.model) == {}
    after = {k: v for k, v in adapted.model.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(after[k], base_state[k]) for k in base_state)
    assert _same(shared, before)
    del tokenizer


def test_a_trained_adapter_names_a_base_that_loads_anywhere(home_with_default, tmp_path):
    """A LoRA run's adapter_config.json names `llmfs-tiny` (not this server's folder, kept in llmfs's own record),
    and llmfs and PEFT still load it: llmfs resolves the name, PEFT takes the base it is given."""
    import json

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmfs import adapters
    from llmfs.adapting import attach, base_of, merge_adapter
    from llmfs.sources import resolve_model_dir
    from llmfs.weights import load_hf_folder
    jobs = default_manager(telemetry_interval=60)
    try:
        rid = submit_train(jobs, TrainConfig(steps=2, batch_size=2, seq_len=32, eval_every=0, lora_rank=4))
        assert jobs.wait(rid, 180) == "succeeded", jobs.get(rid).status().get("traceback")
    finally:
        jobs.shutdown()
    folder = home_with_default / "runs" / rid / "adapter"
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "llmfs-tiny"
    assert base_of(folder) == "llmfs-tiny"
    info = adapters.get_adapter(f"run:{rid}")
    assert info.training["base_path"] == str(resolve_model_dir("llmfs-tiny").resolve())
    assert attach(info.base_model, {"A": folder}).adapters == {"A": str(folder)}
    merged = load_hf_folder(merge_adapter(folder, tmp_path / "merged"))
    assert not any("lora" in n for n, _ in merged.named_parameters())
    hf = AutoModelForCausalLM.from_pretrained(resolve_model_dir(base_of(folder)))
    peft_model = PeftModel.from_pretrained(hf, str(folder))
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())
