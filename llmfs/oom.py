"""A training run that ran out of memory: how to tell (the failure's recorded kind, never its wording) and the
retries to offer, each one change to the run's config with what it saves."""

from __future__ import annotations

OOM_TYPES = ("OutOfMemoryError", "MemoryError")   # exception class names torch and Python raise


def out_of_memory(status: dict) -> bool:
    """Did the run in `status` (status.json) fail for lack of memory? By the kind the job runner recorded
    (`llmfs.jobs.error_kind`: exception types, a child killed by the system) or the exception's type."""
    return status.get("error_kind") == "out_of_memory" or status.get("error_type") in OOM_TYPES


def retry_options(cfg: dict, cuda: bool) -> dict[str, dict]:
    """The retries offered for a training run that ran out of memory: name -> label, icon, the config changes,
    what each saves (the button's help), and why it is off (None: on)."""
    batch, accum = int(cfg.get("batch_size") or 1), int(cfg.get("grad_accum") or 1)
    precision, rank = cfg.get("precision") or "fp32", int(cfg.get("lora_rank") or 0)
    random_init = cfg.get("init") == "random"
    lora_changes = {"lora_rank": rank or 8, "freeze": "full"}
    return {
        "half": {"label": "Half the batch", "icon": ":material/splitscreen:",
                 "changes": {"batch_size": max(1, batch // 2), "grad_accum": accum * 2},
                 "help": f"Batch size {batch} → {max(1, batch // 2)} and gradient accumulation {accum} → {accum * 2}: "
                         "the activations held in memory at once halve, while each update still averages as many "
                         "tokens as before (the same learning curve per step, a little slower).",
                 "off": "The batch is already a single sequence: lower the sequence length instead."
                 if batch < 2 else None},
        "bf16": {"label": "bf16 precision", "icon": ":material/speed:", "changes": {"precision": "bf16"},
                 "help": "Matmuls in bfloat16: the activations kept for the backward pass take about half of fp32's "
                         "memory (the weights and Adam's state stay fp32). Best on GPUs from compute capability 8.0.",
                 "off": "This run already used bf16." if precision.startswith("bf16") else None},
        "lora": {"label": "LoRA (rank 8)", "icon": ":material/tune:", "changes": lora_changes,
                 "help": "Freeze the model's weights and train small rank-8 adapters beside them: no gradients and "
                         "no Adam state (two numbers per trained weight) for the model itself, so training needs "
                         "little more than the weights' own memory.",
                 "off": "This run already trained LoRA adapters." if rank else
                 "LoRA adapts pretrained weights; this run started from random ones." if random_init else None},
        "4bit": {"label": "4-bit base (QLoRA)", "icon": ":material/compress:",
                 "changes": {**lora_changes, "quantize": "4bit",
                             **({"precision": "bf16"} if precision == "bf16-pure" else {})},
                 "help": "LoRA as above, and the frozen base weights stored in 4-bit NF4: about a quarter of their "
                         "16-bit memory, an eighth of fp32's. " + (
                             "bitsandbytes runs it on this GPU." if cuda else
                             "bitsandbytes runs it on this CPU too, slower than on a GPU (it unpacks the 4-bit "
                             "weights at every step)."),
                 "off": "This run already kept its base in 4-bit." if cfg.get("quantize") == "4bit" else
                 "LoRA adapts pretrained weights; this run started from random ones." if random_init else None},
    }
