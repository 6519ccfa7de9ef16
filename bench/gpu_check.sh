#!/usr/bin/env bash
# The CUDA paths, checked on a GPU in one go (CI has none): NVML readings, fp32 / fp16 / bf16 memory and speed on
# a GPT-2-small-sized model, QLoRA (4-bit base) training on CUDA, and the tests marked `gpu`.
#
#   bash bench/gpu_check.sh            # from the repository root, with .venv built (make test / make run)
#
# Results go to stdout and, as JSON, to ${OUT:-bench/out}/gpu_check.json; copy the tables into BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | head -5
$PY - <<'PYEOF'
import json
from llmfs import telemetry
m = telemetry.describe_machine()
print(json.dumps({k: m[k] for k in ("torch", "cuda_available", "gpus", "nvml_error")}, default=str))
assert m["cuda_available"], "CUDA is not available to torch: is the CUDA build of torch installed?"
assert m["gpus"] and m["gpus"][0].get("memory_total_bytes"), "NVML gave no GPU reading"
PYEOF

echo "== tests marked gpu"
$PY -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tail -15

echo "== precision modes, GPT-2 small (124M), batch 8 x 1024"
$PY bench/precision_modes.py --preset gpt2 --batch 8 --seq 1024 --steps 12 --warmup 4 --rounds 2 \
    --modes fp32,fp16,bf16,bf16-pure --device cuda --json | tee "$OUT/precision_modes.txt"
echo "== the same with TF32 for fp32"
$PY bench/precision_modes.py --preset gpt2 --batch 8 --seq 1024 --steps 12 --warmup 4 --rounds 1 \
    --modes fp32 --device cuda --tf32 | tail -4

echo "== LoRA vs PEFT and full / LoRA / QLoRA memory on CUDA"
$PY bench/lora_vs_peft.py --device cuda 2>&1 | tail -30

echo "== GPT-2 small through our loop and bare DDP: tokens/s and MFU (all GPUs through torchrun when several)"
$PY bench/distributed_scaling.py --gpu --steps 20 --warmup 5 2>&1 | tail -6
