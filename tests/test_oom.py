"""The retries offered after an out-of-memory failure: each says what it saves, and none is refused for a reason
that is not true (4-bit QLoRA runs on a CPU through bitsandbytes, as the L15 tests show)."""

from llmfs.oom import retry_options


def test_four_bit_retry_offered_without_a_gpu():
    cpu = retry_options({"batch_size": 8, "precision": "fp32"}, cuda=False)["4bit"]
    assert cpu["off"] is None and "CPU" in cpu["help"]
    assert cpu["changes"]["quantize"] == "4bit" and cpu["changes"]["lora_rank"] == 8
    assert retry_options({"quantize": "4bit", "lora_rank": 8}, cuda=False)["4bit"]["off"]
    assert "random" in retry_options({"init": "random"}, cuda=True)["4bit"]["off"]


def test_half_batch_keeps_the_tokens_per_update():
    half = retry_options({"batch_size": 8, "grad_accum": 2}, cuda=False)["half"]
    assert half["changes"] == {"batch_size": 4, "grad_accum": 4} and half["off"] is None
    assert retry_options({"batch_size": 1}, cuda=False)["half"]["off"]
