"""Freezing strategies: what each one trains, checked on requires_grad and on which weights a real optimizer step
moved; learning-rate groups; gradual unfreezing on schedule; counts; their memory (llmfs.memory); config and CLI
fields."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llmfs.config import ConfigError, TrainConfig
from llmfs.freeze import (
    STRATEGIES,
    apply_freeze,
    freeze_options,
    param_groups,
    plan_freeze,
)
from llmfs.memory import estimate
from llmfs.model import GPT, GPTConfig
from llmfs.train import RandomWindows, count_params, make_optimizer, train

TINY = GPTConfig(vocab_size=64, n_positions=32, n_embd=32, n_layer=4, n_head=2)
WTE, WPE, HEAD = "transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"
LN_F = {"transformer.ln_f.weight", "transformer.ln_f.bias"}


def _model(config=TINY, seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(config)


def _block(model, *blocks) -> set[str]:
    return {n for n, _ in model.named_parameters() if any(n.startswith(f"transformer.h.{i}.") for i in blocks)}


def _bias_and_norms(model) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.endswith(".bias") or ".ln_" in n}


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=2, batch_size=4, seq_len=16, lr=1e-2, warmup_steps=1, eval_every=0, checkpoint_every=0,
                device="cpu", grad_clip=0.0)
    return TrainConfig(**{**base, **kw})


def _batches(seed=0) -> RandomWindows:
    g = torch.Generator().manual_seed(seed)
    return RandomWindows(torch.randint(0, TINY.vocab_size, (2000,), generator=g), 4, 16, seed=seed)


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _changed(model, before) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}


def _requires_grad(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


# The tensors each strategy trains on TINY (tied head; N = 2 for freeze_bottom / train_top). Names are those of
# named_parameters() after apply_freeze: a tied head is the same tensor as wte and has no name of its own.
EXPECTED = {
    "full": lambda m: {n for n, _ in m.named_parameters()},
    "linear_probe": lambda m: {HEAD},
    "freeze_embeddings": lambda m: _block(m, 0, 1, 2, 3) | LN_F,
    "freeze_bottom": lambda m: _block(m, 2, 3) | LN_F,
    "train_top": lambda m: _block(m, 2, 3) | LN_F | {HEAD},
    "bitfit": _bias_and_norms,
    "gradual": lambda m: _block(m, 3) | LN_F | {HEAD},  # the first K = 100 steps
    "llrd": lambda m: {n for n, _ in m.named_parameters()},
}


def test_expectations_cover_every_strategy():
    assert set(EXPECTED) == set(STRATEGIES)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_trains_exactly_its_tensors(strategy):
    model = _model()
    plan = apply_freeze(model, strategy, n_layers=2, unfreeze_every=100, lr_decay=0.5)
    expected = EXPECTED[strategy](model)
    assert _requires_grad(model) == expected
    assert {r.name for r in plan.rows if r.start_step == 1 and r.tied_to is None} == expected
    before = _snapshot(model)
    result = train(model, _batches(), _cfg(), freeze_plan=plan)
    assert result.steps_done == 2
    assert _changed(model, before) == expected  # a real AdamW step moved these and nothing else


def test_train_applies_the_config_strategy_without_a_plan():
    model = _model()
    before = _snapshot(model)
    result = train(model, _batches(), _cfg(freeze="bitfit"))
    assert _changed(model, before) == _bias_and_norms(model)
    assert result.trainable_params == 1728 and result.total_params == 53952  # see test_memory_estimate_by_hand


def test_linear_probe_unties_the_head_and_leaves_the_embeddings():
    model = _model()
    wte = model.transformer.wte.weight.detach().clone()
    plan = apply_freeze(model, "linear_probe")
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert not model.config.tie_word_embeddings  # so save_hf_folder writes the head as its own tensor
    assert torch.equal(model.lm_head.weight, wte)  # the copy starts where the tied head was
    assert plan.untie_head and "own copy" in plan.notes[0]
    train(model, _batches(), _cfg(), freeze_plan=plan)
    assert torch.equal(model.transformer.wte.weight, wte)
    assert not torch.equal(model.lm_head.weight, wte)


def test_an_untied_model_keeps_its_head_trainable_with_frozen_embeddings():
    model = _model(dataclasses.replace(TINY, tie_word_embeddings=False))
    plan = apply_freeze(model, "freeze_embeddings")
    assert HEAD in _requires_grad(model) and WTE not in _requires_grad(model)
    assert not plan.untie_head and plan.notes == ()


def test_tied_head_frozen_with_the_embeddings_is_said_in_the_plan():
    model = _model()
    plan = apply_freeze(model, "freeze_embeddings")
    head = plan.row(HEAD)
    assert head.tied_to == WTE and not head.trainable
    assert "frozen with them" in plan.notes[0]
    assert "head: frozen (tied to the word embeddings)" in plan.summary()


# -- layer-wise learning rates ---------------------------------------------------------------------------------
def _scale_of(name: str, decay: float, n_layer: int = 4) -> float:
    # Clark et al. (ELECTRA): block i at decay^(n_layer - i), embeddings decay^(n_layer + 1), head / ln_f 1.
    if name in (WTE, WPE):
        return decay ** (n_layer + 1)
    if name.startswith("transformer.h."):
        return decay ** (n_layer - int(name.split(".")[2]))
    return 1.0


def test_llrd_groups_have_the_right_learning_rates():
    model = _model(dataclasses.replace(TINY, tie_word_embeddings=False))
    plan = apply_freeze(model, "llrd", lr_decay=0.5)
    groups = param_groups(model, plan, base_lr=1e-3, weight_decay=0.1)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert lr_of[id(p)] == pytest.approx(1e-3 * _scale_of(name, 0.5)), name
    assert sorted({g["lr_scale"] for g in groups}) == [0.5**5, 0.5**4, 0.5**3, 0.5**2, 0.5, 1.0]
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert all(decay_of[id(p)] == (0.1 if p.dim() >= 2 else 0.0) for p in model.parameters())


def test_llrd_scales_the_step_the_loop_takes():
    # Adam's first update is lr * g / (|g| + eps), about lr for every element with a real gradient, so the
    # largest change in each tensor after one step (no decay, no clipping) is its group's learning rate.
    model = _model(dataclasses.replace(TINY, tie_word_embeddings=False))
    plan = apply_freeze(model, "llrd", lr_decay=0.5)
    before = _snapshot(model)
    train(model, _batches(), _cfg(steps=1, lr=1e-3, weight_decay=0.0), freeze_plan=plan)
    for name, p in model.named_parameters():
        step = (p.detach() - before[name]).abs().max().item()
        assert step == pytest.approx(1e-3 * _scale_of(name, 0.5), rel=1e-2), name


def test_llrd_on_a_tied_head_uses_the_embedding_rate():
    plan = plan_freeze(_model(), "llrd", lr_decay=0.5)
    assert plan.row(HEAD).lr_scale == plan.row(WTE).lr_scale == 0.5**5
    assert "smallest" in plan.notes[0]


# -- gradual unfreezing ------------------------------------------------------------------------------------------
class Snapshots:
    """A sink that copies some tensors after every step."""

    def __init__(self, model, names):
        self.params = dict(model.named_parameters())
        self.names, self.after, self.trainable = names, {}, {}

    def emit(self, step, kind="train", **metrics):
        if kind == "train":
            self.after[step] = {n: self.params[n].detach().clone() for n in self.names}
            self.trainable[step] = metrics["trainable_params"]


def test_gradual_unfreezes_top_down_on_schedule():
    model = _model()
    plan = apply_freeze(model, "gradual", unfreeze_every=2)
    # Top block with the head at step 1, then one block down every 2 steps, embeddings last.
    assert {step: {n.split(".")[2] if ".h." in n else n for n in names} for step, names in plan.schedule.items()} \
        == {3: {"2"}, 5: {"1"}, 7: {"0"}, 9: {WTE, WPE}}
    watched = ["transformer.h.3.mlp.c_fc.weight", "transformer.h.2.mlp.c_fc.weight",
               "transformer.h.1.attn.c_attn.weight", WTE, HEAD]
    before = _snapshot(model)
    sink = Snapshots(model, watched)
    train(model, _batches(), _cfg(steps=4, weight_decay=0.1), freeze_plan=plan, sink=sink)

    def moved(name, step):
        return not torch.equal(sink.after[step][name], before[name])

    assert moved("transformer.h.3.mlp.c_fc.weight", 1) and moved(HEAD, 1)
    assert not moved("transformer.h.2.mlp.c_fc.weight", 2)  # frozen before its step (weight decay included)
    assert moved("transformer.h.2.mlp.c_fc.weight", 3)      # and trains from it
    assert not moved("transformer.h.1.attn.c_attn.weight", 4) and not moved(WTE, 4)
    block = sum(p.numel() for n, p in model.named_parameters() if n.startswith("transformer.h.3."))
    head_and_norm = 64 * 32 + 64
    assert sink.trainable == {1: head_and_norm + block, 2: head_and_norm + block, 3: head_and_norm + 2 * block,
                              4: head_and_norm + 2 * block}


def test_gradual_resume_matches_an_uninterrupted_run(tmp_path):
    cfg = _cfg(steps=6, checkpoint_every=2)
    opts = dict(unfreeze_every=2)

    model = _model()
    straight = train(model, _batches(), cfg, freeze_plan=apply_freeze(model, "gradual", **opts),
                     checkpoint_dir=tmp_path / "a")
    calls = {"n": 0}

    def stop_after_3():
        calls["n"] += 1
        return calls["n"] > 3

    model = _model()
    first = train(model, _batches(), cfg, freeze_plan=apply_freeze(model, "gradual", **opts),
                  checkpoint_dir=tmp_path / "b", should_stop=stop_after_3)
    assert first.steps_done == 3
    model = _model(seed=7)  # other weights: resume must restore them, and the unfreezing state for step 4
    resumed = train(model, _batches(), cfg, freeze_plan=apply_freeze(model, "gradual", **opts),
                    checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-4, abs=1e-5)


# -- counts, layer map, memory -----------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_counts_equal_the_sum_over_the_plan(strategy):
    model = _model()
    plan = apply_freeze(model, strategy, n_layers=2, unfreeze_every=1)
    unique = [r for r in plan.rows if r.tied_to is None]
    assert plan.trainable_params == sum(r.numel for r in unique if r.trainable)
    assert plan.total_params == sum(r.numel for r in unique) == model.num_params()
    assert plan.total_params == sum(g["params"] for g in plan.groups())
    assert plan.trainable_params == sum(g["trainable_params"] for g in plan.groups())
    if strategy != "gradual":
        assert (plan.trainable_params, plan.total_params) == count_params(model)


def test_layer_map_groups_in_model_order():
    groups = plan_freeze(TINY, "freeze_bottom", n_layers=1).groups()
    assert [g["group"] for g in groups] == ["embeddings", "block 0", "block 1", "block 2", "block 3",
                                            "final norm", "head"]
    assert [g["status"] for g in groups] == ["frozen", "frozen", "trains", "trains", "trains", "trains", "frozen"]
    assert groups[-1]["tied"] and groups[-1]["params"] == 0  # the tied head is drawn, counted with wte
    bitfit = {g["group"]: g["status"] for g in plan_freeze(TINY, "bitfit").groups()}
    assert bitfit["block 0"] == "partly trains" and bitfit["final norm"] == "trains"


def test_plan_does_not_touch_the_model_and_matches_a_plan_from_the_config():
    model = _model()
    plan = plan_freeze(model, "linear_probe")
    assert model.lm_head.weight is model.transformer.wte.weight
    assert all(p.requires_grad for p in model.parameters())
    assert plan == plan_freeze(TINY, "linear_probe")  # from shapes alone, on the meta device
    assert plan.to_dict()["rows"][-1] == {"name": HEAD, "shape": (64, 32), "numel": 2048, "group": "head",
                                          "trainable": True, "start_step": 1, "lr_scale": 1.0, "decay": True,
                                          "tied_to": None}


def test_an_unapplied_plan_is_refused_by_the_optimizer():
    model = _model()
    plan = plan_freeze(model, "linear_probe")  # describes an untied head this model does not have yet
    with pytest.raises(ValueError, match="do not match the freeze plan"):
        make_optimizer(model, _cfg(), plan)


def test_memory_estimate_by_hand():
    # TINY by hand: wte 64*32 = 2048, wpe 32*32 = 1024, ln_f 2*32 = 64, and per block ln_1 64 + c_attn 32*96+96
    # + attn.c_proj 32*32+32 + ln_2 64 + c_fc 32*128+128 + mlp.c_proj 128*32+32 = 12,704; tied head counted once:
    # 2048 + 1024 + 4 * 12,704 + 64 = 53,952 parameters.
    full = estimate(TINY, freeze=plan_freeze(TINY, "full"), batch_size=2, seq_len=8)
    assert (full.weights_bytes, full.gradients_bytes, full.optimizer_bytes) == (215_808, 215_808, 431_616)
    assert (full.trainable_params, full.total_params, full.freeze) == (53_952, 53_952, "full")
    # BitFit: per block biases 96+32+128+32 and LayerNorms 64+64 = 416; 4 * 416 + ln_f 64 = 1,728.
    bitfit = estimate(TINY, freeze="bitfit", batch_size=2, seq_len=8)
    assert (bitfit.gradients_bytes, bitfit.optimizer_bytes) == (1728 * 4, 1728 * 8)
    # Linear probe: the untied head adds 2048 weights (56,000) and is all that trains; in bf16-pure 2 bytes each
    # for weights, gradients and both AdamW states.
    probe = estimate(TINY, freeze=plan_freeze(TINY, "linear_probe"), precision="bf16-pure", batch_size=2, seq_len=8)
    assert (probe.weights_bytes, probe.gradients_bytes, probe.optimizer_bytes) == (56_000 * 2, 2048 * 2, 2048 * 2 * 2)
    # ... and the forward pass keeps only what the head needs: its input (16 tokens x 32, bf16), the log-softmax
    # (16 x 64, bf16), the targets (16 int64) and the loss's total weight (one bf16).
    assert probe.activations_bytes == 16 * 32 * 2 + 16 * 64 * 2 + 16 * 8 + 2
    assert estimate(TINY, freeze="bitfit", optimizer="sgd").optimizer_bytes == 0
    # Freezing keeps activations out of memory too: nothing below the first block that trains is saved (and the
    # head, frozen with the tied embeddings, no longer keeps its input).
    acts = [estimate(TINY, freeze=plan_freeze(TINY, "freeze_bottom", n_layers=n)).activations_bytes for n in range(5)]
    assert estimate(TINY).activations_bytes > acts[0] and all(a > b for a, b in zip(acts, acts[1:]))


# -- validation, config and CLI ----------------------------------------------------------------------------------
def test_bad_strategy_settings_refused():
    with pytest.raises(ValueError, match="Unknown freezing strategy 'top'"):
        plan_freeze(TINY, "top")
    with pytest.raises(ValueError, match=r"n_layers must be between 0 and 4, the model's number of blocks \(got 5\)"):
        apply_freeze(_model(), "train_top", n_layers=5)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        estimate(TINY, freeze=plan_freeze(TINY), optimizer="lion")


@pytest.mark.parametrize("field,value,words", [
    ("freeze", "top", "Which layers train must be one of full, linear_probe"),
    ("freeze_layers", -1, "Blocks (freeze_bottom / train_top) must be between 0 and 1000 (got -1)"),
    ("unfreeze_every", 0, "Unfreeze a block every must be between 1 and"),
    ("layer_lr_decay", 1.5, "Layer learning-rate decay must be between 0.1 and 1 (got 1.5)"),
])
def test_invalid_freeze_fields_name_field_and_range(field, value, words):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**{field: value})
    assert err.value.field == field and words in str(err.value)


def test_freeze_layers_checked_against_the_model():
    with pytest.raises(ConfigError, match=r"Blocks \(freeze_bottom / train_top\) must be between 0 and 4, the model's "
                                          r"number of blocks"):
        TrainConfig(freeze="freeze_bottom", freeze_layers=6).check_layers(4)
    TrainConfig(freeze="bitfit", freeze_layers=6).check_layers(4)  # ignored by strategies that do not use it


def test_config_fields_become_cli_flags_and_plan_options():
    from llmfs.cli import build_parser, config_from_args
    args = build_parser().parse_args(["train", "--freeze", "bitfit", "--freeze-layers", "2", "--unfreeze-every",
                                      "5", "--layer-lr-decay", "0.7"])
    cfg = config_from_args(TrainConfig, args)
    assert freeze_options(cfg) == {"strategy": "bitfit", "n_layers": 2, "unfreeze_every": 5, "lr_decay": 0.7}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--freeze", "everything"])
