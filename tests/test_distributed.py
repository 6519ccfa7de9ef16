"""Several processes through torchrun on the CPU (gloo): DDP trains exactly like one process with the same global
batch, each rank on its own rows, rank 0 alone writing; a killed rank fails the run (no hang) and it resumes on
another number of processes; FSDP trains and its checkpoint loads in one process; the job runner launches torchrun
itself and Stop ends every rank; LoRA and bf16 work under both strategies; our Llama trains under FSDP (a tied head,
as smollm2-135m's) like one process, and its LoRA adapter under DDP loads in PEFT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmfs.config import TrainConfig
from llmfs.distributed import DistEnv, RankSlice
from llmfs.recipes import submit_train
from llmfs.runner import default_manager
from llmfs.runs import CANCELLED, FAILED, INTERRUPTED, SUCCEEDED, Run, list_runs
from llmfs.train import RandomWindows

ROOT = Path(__file__).resolve().parents[1]
psutil = pytest.importorskip("psutil")


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Lists are mutable sequences. Tuples are immutable sequences. Sets hold unique items. "
                    "Dictionaries map keys to values. Strings are immutable sequences of characters. " * 200)
    return path


def _cfg(model, data, **kw) -> dict:
    base = dict(model=str(model), data=str(data), steps=6, batch_size=4, seq_len=32, eval_every=0, warmup_steps=1,
                checkpoint_every=2, device="cpu", seed=7)
    return {**base, **kw}


def _flags(cfg: dict) -> list[str]:
    out = []
    for k, v in cfg.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def torchrun(n: int, cfg: dict, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m", "llmfs",
           "train", *_flags(cfg), "--json", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=timeout)


def one_process(root: Path, cfg: dict) -> Run:
    jobs = default_manager(root, telemetry_interval=60)
    try:
        rid = submit_train(jobs, TrainConfig(**cfg))
        assert jobs.wait(rid, 300) == SUCCEEDED, jobs.get(rid).status().get("traceback")
        return jobs.get(rid)
    finally:
        jobs.shutdown()


def resume_in_one_process(run: Run, steps: int) -> None:
    """Continue `run` from its last checkpoint in this process, up to `steps` (its config changed on disk)."""
    record = json.loads((run.path / "config.json").read_text())
    record["config"]["steps"] = steps
    (run.path / "config.json").write_text(json.dumps(record))
    jobs = default_manager(run.path.parent, telemetry_interval=60)
    try:
        jobs.resume(run.run_id)
        assert jobs.wait(run.run_id, 300) == SUCCEEDED, run.status().get("traceback")
    finally:
        jobs.shutdown()


def _local_rank(p) -> str | None:
    try:
        return p.environ().get("LOCAL_RANK")
    except psutil.Error:  # a helper process that ended meanwhile
        return None


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _wait_for(cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.2)
    return False


def test_rank_slices_split_each_global_batch_without_overlap():
    tokens = torch.arange(5000)
    source = RandomWindows(tokens, batch_size=6, seq_len=16, seed=3)
    parts = [RankSlice(source, DistEnv(rank=r, world_size=3)).batch(5, 1) for r in range(3)]
    whole = source.batch(5, 1)
    assert torch.equal(torch.cat([x for x, _ in parts]), whole[0]) and torch.equal(torch.cat([y for _, y in parts]),
                                                                                   whole[1])
    starts = [set(x[:, 0].tolist()) for x, _ in parts]
    assert all(len(a & b) == 0 for i, a in enumerate(starts) for b in starts[i + 1:])
    with pytest.raises(ValueError, match="does not split"):
        RankSlice(RandomWindows(tokens, 5, 16), DistEnv(rank=0, world_size=2)).batch(1)


def test_two_ddp_processes_train_like_one_process_with_the_global_batch(tiny_hf_folder, text_file, tmp_path,
                                                                        llmfs_home):
    single = one_process(tmp_path / "single", _cfg(tiny_hf_folder, text_file, batch_size=4))
    out = tmp_path / "ddp-run"
    p = torchrun(2, _cfg(tiny_hf_folder, text_file, batch_size=2), "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    summary = _last_json(p.stdout)  # rank 0's summary alone: the other rank prints nothing
    assert summary["state"] == SUCCEEDED and summary["run_dir"] == str(out)
    assert p.stdout.count('"run_dir"') == 1
    run = Run(out)
    losses = [m["loss"] for m in run.read_metrics("train")]
    assert [m["step"] for m in run.read_metrics("train")] == [1, 2, 3, 4, 5, 6]  # one writer: no step twice
    assert losses == pytest.approx(single.status()["result"]["losses"], rel=1e-4, abs=1e-5)
    assert run.read_metrics("train")[0]["tokens"] == 4 * 32  # the global batch's tokens, both ranks counted
    ranks = run.read_metrics("ranks")
    assert len(ranks) == 1 and ranks[0]["world_size"] == 2
    assert len(set(ranks[0]["data_fingerprints"])) == 2  # each rank trained on its own rows
    assert list_runs(llmfs_home / "runs") == []  # no stray run folder from another rank
    assert (out / "model" / "config.json").is_file() and (out / "checkpoints" / "last" / "state.json").is_file()
    assert run.status()["pid"] != os.getpid() and "2 processes (DDP)" in run.log_tail(100)


def test_a_killed_rank_fails_the_run_and_it_resumes_on_one_process(tiny_hf_folder, text_file, tmp_path):
    out = tmp_path / "ddp-run"
    cfg = _cfg(tiny_hf_folder, text_file, batch_size=2, steps=400, checkpoint_every=3)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "llmfs",
           "train", *_flags(cfg), "--out", str(out), "--json"]
    log = tmp_path / "torchrun.log"  # a file, not a pipe: a full pipe nobody reads would stall the ranks
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
    try:
        run = Run(out)
        ckpt = out / "checkpoints" / "last" / "state.json"
        assert _wait_for(lambda: ckpt.exists() and len(run.read_metrics("train")) >= 5, 180)
        ranks = [c for c in psutil.Process(proc.pid).children(recursive=True) if _local_rank(c) == "1"]
        assert len(ranks) == 1
        ranks[0].send_signal(signal.SIGKILL)
        proc.wait(timeout=120)  # the whole run ends: no rank left waiting for the dead one
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    status = run.status()
    assert status["state"] == FAILED, (status, log.read_text()[-4000:])
    assert "Another process of this distributed run failed or was killed" in status["error"]
    assert status["error_kind"] == "rank_failed"
    seen = [m["loss"] for m in run.read_metrics("train")]
    step = json.loads(ckpt.read_text())["step"]
    resume_in_one_process(run, steps=step + 2)  # another number of processes, a few steps past the checkpoint
    result = run.status()["result"]
    assert result["steps"] == step + 2 and result["losses"][:step] == pytest.approx(seen[:step], rel=1e-6)


def test_fsdp_trains_and_its_checkpoint_loads_in_one_process(tiny_hf_folder, text_file, tmp_path):
    out = tmp_path / "fsdp-run"
    p = torchrun(2, _cfg(tiny_hf_folder, text_file, batch_size=2, steps=4, strategy="fsdp"), "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    run = Run(out)
    fsdp_losses = [m["loss"] for m in run.read_metrics("train")]
    assert len(fsdp_losses) == 4 and fsdp_losses[-1] < fsdp_losses[0]
    state = json.loads((out / "checkpoints" / "last" / "state.json").read_text())
    assert state["optimizer_keys"] == "names"  # whole tensors gathered by name, not one rank's shards
    single = one_process(tmp_path / "single", _cfg(tiny_hf_folder, text_file, batch_size=4, steps=4))
    assert fsdp_losses == pytest.approx(single.status()["result"]["losses"], rel=1e-4, abs=1e-5)
    # the saved model and the checkpoint load in a single process: resume two more steps there
    from transformers import GPT2LMHeadModel
    assert GPT2LMHeadModel.from_pretrained(out / "model").num_parameters() > 0
    run.update_status(state=INTERRUPTED)
    resume_in_one_process(run, steps=6)
    resumed = run.status()["result"]["losses"]
    assert resumed[:4] == pytest.approx(fsdp_losses, rel=1e-6) and len(resumed) == 6


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_lora_and_bf16_under_several_processes_save_one_peft_adapter(tiny_hf_folder, text_file, tmp_path,
                                                                     strategy):
    out = tmp_path / f"{strategy}-lora"
    p = torchrun(2, _cfg(tiny_hf_folder, text_file, batch_size=2, steps=3, strategy=strategy, lora_rank=4,
                         precision="bf16"), "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    summary = _last_json(p.stdout)
    assert summary["state"] == SUCCEEDED and summary["precision"] == "bf16"
    assert summary["trainable_params"] < summary["total_params"] / 5
    adapters = sorted(x.parent for x in out.rglob("adapter_config.json"))
    assert adapters == [out / "adapter"]  # saved once, by rank 0
    from peft import PeftModel
    from transformers import GPT2LMHeadModel
    peft = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(tiny_hf_folder), out / "adapter")
    assert any("lora_A" in n for n, _ in peft.named_parameters())


@pytest.fixture
def tied_llama_folder(tiny_llama_folder):
    """The tiny Llama with its head tied to the embeddings, as smollm2-135m's is (our Llama ignores the stored head)."""
    config = tiny_llama_folder / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "tie_word_embeddings": True}))
    return tiny_llama_folder


def test_our_llama_under_fsdp_trains_like_one_process_and_saves_each_tensor_once(tied_llama_folder, text_file,
                                                                                  tmp_path):
    out = tmp_path / "fsdp-llama"
    p = torchrun(2, _cfg(tied_llama_folder, text_file, batch_size=2, steps=3, strategy="fsdp"), "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    summary, run = _last_json(p.stdout), Run(out)
    assert run.read_metrics("ranks")[0]["strategy"] == "fsdp"
    single = one_process(tmp_path / "single", _cfg(tied_llama_folder, text_file, batch_size=4, steps=3))
    assert [m["loss"] for m in run.read_metrics("train")] == pytest.approx(single.status()["result"]["losses"],
                                                                             rel=1e-4, abs=1e-5)
    assert summary["memory_estimate"]["method"] == "full"  # the run records our Llama's estimate too
    # FSDP gathers the tied head under both its names: the checkpoint keeps one, as a single process writes it
    from safetensors import safe_open
    with safe_open(out / "checkpoints" / "last" / "model.safetensors", "pt") as f:
        names = set(f.keys())
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    assert len(names) == 2 * 9 + 2  # 9 tensors a block, the embedding and the final norm
    # the saved model is a Hugging Face Llama: transformers gives the logits our Llama gives
    from transformers import LlamaForCausalLM

    from llmfs.llama import load_llama
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        theirs = LlamaForCausalLM.from_pretrained(out / "model").eval()(ids).logits
        assert torch.allclose(theirs, load_llama(out / "model")(ids)[0], atol=1e-4)


def test_our_llama_lora_in_bf16_under_ddp_saves_one_peft_adapter(tiny_llama_folder, text_file, tmp_path):
    out = tmp_path / "ddp-llama-lora"
    p = torchrun(2, _cfg(tiny_llama_folder, text_file, batch_size=2, steps=3, lora_rank=4, lora_targets="qkv,mlp_in",
                         precision="bf16"), "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    summary = _last_json(p.stdout)
    assert summary["state"] == SUCCEEDED and summary["precision"] == "bf16"
    assert summary["memory_estimate"]["trainable_params"] == summary["trainable_params"] < summary["total_params"] / 5
    assert Run(out).read_metrics("ranks")[0]["strategy"] == "ddp"
    adapters = sorted(x.parent for x in out.rglob("adapter_config.json"))
    assert adapters == [out / "adapter"]  # saved once, by rank 0
    from peft import PeftModel
    from transformers import LlamaForCausalLM
    peft = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny_llama_folder), out / "adapter")
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[1] for n, _ in peft.named_parameters() if "lora_A" in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"}


def test_the_job_runner_launches_torchrun_and_stop_ends_every_rank(tiny_hf_folder, text_file, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    jobs = default_manager(tmp_path / "runs", telemetry_interval=60)
    try:
        short = submit_train(jobs, TrainConfig(**_cfg(tiny_hf_folder, text_file, batch_size=2, processes=2)))
        assert jobs.wait(short, 300) == SUCCEEDED, jobs.get(short).status().get("error")
        run = jobs.get(short)
        result = run.status()["result"]
        assert result["steps"] == 6 and len(result["losses"]) == 6 and result["samples"]
        assert [m["step"] for m in run.read_metrics("train")] == [1, 2, 3, 4, 5, 6]
        assert run.read_metrics("ranks")[0]["world_size"] == 2
        assert run.read_metrics("telemetry")  # rank 0 samples its own process
        assert "Starting 2 training processes (DDP) through torchrun" in run.log_tail(200)

        long = submit_train(jobs, TrainConfig(**_cfg(tiny_hf_folder, text_file, batch_size=2, processes=2,
                                                     steps=100_000)))
        lrun = jobs.get(long)
        assert _wait_for(lambda: len(lrun.read_metrics("train")) >= 3, 180)
        assert jobs.cancel(long) and jobs.wait(long, 120) == CANCELLED
        assert not [p for p in psutil.process_iter(["cmdline"])
                    if str(lrun.path) in " ".join(p.info["cmdline"] or [])]  # no rank left behind
        assert (lrun.path / "checkpoints" / "last" / "state.json").is_file()  # stopped at a step, checkpointed
    finally:
        jobs.shutdown()


def test_a_one_process_checkpoint_resumes_on_two_fsdp_processes(tiny_hf_folder, text_file, tmp_path):
    run = one_process(tmp_path / "runs", _cfg(tiny_hf_folder, text_file, batch_size=4, steps=4, strategy="fsdp"))
    first = run.status()["result"]["losses"]
    record = json.loads((run.path / "config.json").read_text())
    record["config"]["steps"] = 6
    record["config"]["batch_size"] = 2  # per process: the same global batch on two
    (run.path / "config.json").write_text(json.dumps(record))
    run.update_status(state=INTERRUPTED)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "llmfs",
           "train", "--out", str(run.path), "--resume", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = _last_json(p.stdout)
    assert summary["state"] == SUCCEEDED and summary["steps"] == 6
    assert summary["losses"][:4] == pytest.approx(first, rel=1e-6)  # the history carried over
    assert run.read_metrics("ranks")[-1]["strategy"] == "fsdp"  # the optimizer state went over by name
    steps = [m["step"] for m in run.read_metrics("train")]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_with_a_file_per_process_each_rank_reads_only_its_own_part(tiny_hf_folder, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i, topic in enumerate(["Lists and tuples hold sequences. ", "Dictionaries map keys to values. ",
                               "Generators yield values lazily. ", "Classes bundle data and behaviour. "]):
        (data / f"part-{i}.jsonl").write_text("".join(json.dumps({"text": topic * 8 + f"({i}.{j})"}) + "\n"
                                                      for j in range(40)))
    out = tmp_path / "ddp-parts"
    p = torchrun(2, _cfg(tiny_hf_folder, data, batch_size=2, steps=4), "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    run = Run(out)
    (parts,) = run.read_metrics("data_parts")
    shares = parts["train_tokens"]
    assert len(shares) == 2 and all(n > 0 for n in shares)
    # 4 files over 2 ranks: rank 0 reads part-0 and part-2, rank 1 part-1 and part-3 (sharding's rank slicing),
    # so together they hold every document once: the same tokens as one process reading all four
    from llmfs.data.sharding import ShardedDocuments
    ids = [sorted(i["id"] for i in ShardedDocuments(data, r, 2)) for r in range(2)]
    assert not set(ids[0]) & set(ids[1]) and len(ids[0]) + len(ids[1]) == 160
    assert "Each of the 2 processes reads its own part" in run.log_tail(200)
    assert len(run.read_metrics("train")) == 4 and run.status()["state"] == SUCCEEDED


SERVER = """
import sys, json
from llmfs.config import TrainConfig
from llmfs.recipes import submit_train
from llmfs.runner import default_manager
jm = default_manager(sys.argv[1], telemetry_interval=60, isolation="process")
print(submit_train(jm, TrainConfig(**json.loads(sys.argv[2]))), flush=True)
import time; time.sleep(600)
"""


def test_killing_the_server_ends_the_ranks_it_launched(tiny_hf_folder, text_file, tmp_path):
    root = tmp_path / "runs"
    cfg = _cfg(tiny_hf_folder, text_file, batch_size=2, processes=2, steps=100_000)
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(root), json.dumps(cfg)], stdout=subprocess.PIPE,
                              text=True, env=_env(), cwd=ROOT)
    try:
        run = Run(root / server.stdout.readline().strip())
        assert _wait_for(lambda: len(run.read_metrics("train")) >= 3, 180)
        ranks = [p for p in psutil.Process(server.pid).children(recursive=True) if _local_rank(p) is not None]
        assert len(ranks) == 2
    finally:
        server.kill()  # SIGKILL: no clean-up in the server
        server.wait()
    assert _wait_for(lambda: not any(_alive(p) for p in ranks), 60)


def _alive(process) -> bool:
    """Running and not a zombie; a process that ends between the two questions is not alive (psutil raises)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_two_nodes_meeting_through_a_rendezvous_train_as_one_run(tiny_hf_folder, text_file, tmp_path):
    """`--nnodes 2` as on a cluster (one torchrun per node, c10d rendezvous), both "nodes" on this machine."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two-nodes"
    cfg = _cfg(tiny_hf_folder, text_file, batch_size=2)
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                               f"--node_rank={node}", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
                               "--rdzv_id=llmfs-test", "-m", "llmfs", "train", *_flags(cfg), "--out", str(out),
                               "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                              cwd=ROOT) for node in (0, 1)]
    outputs = [n.communicate(timeout=300) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [e[-2000:] for _, e in outputs]
    summaries = [o for o, _ in outputs if o.strip()]
    assert len(summaries) == 1 and _last_json(summaries[0])["state"] == SUCCEEDED  # one rank 0, one report
    run = Run(out)
    assert [m["step"] for m in run.read_metrics("train")] == [1, 2, 3, 4, 5, 6]
    assert run.read_metrics("ranks")[0]["world_size"] == 2
    single = one_process(tmp_path / "single", _cfg(tiny_hf_folder, text_file, batch_size=4))
    assert [m["loss"] for m in run.read_metrics("train")] == pytest.approx(single.status()["result"]["losses"],
                                                                             rel=1e-4, abs=1e-5)
