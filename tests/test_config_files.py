"""Settings files (llmfs.config_files) and `--config` on the command line: round trips for every config class in
TOML and YAML, flags over the file, and bad files refused naming their line and the fix."""

from __future__ import annotations

import json

import pytest
import tomllib

from llmfs import cli
from llmfs.config import EvalConfig, TrainConfig
from llmfs.config_files import ConfigFileError, dump_settings, parse_settings, read_settings
from llmfs.data.pipeline import PipelineConfig
from llmfs.generate import SampleConfig

CONFIGS = [
    TrainConfig(steps=7, lr=3e-5, epochs=1.5, pack=True, save_model=False, seq_len=64, lora_rank=8, lora_alpha=16.5,
                model='/data/my "odd" model\\dir\twith tab\x7f é 😀'),
    EvalConfig(task="mmlu", num_fewshot=3, limit=20, data="questions #1.jsonl"),
    PipelineConfig(inputs=("a.jsonl", "hf:someone/web"), weights=(0.7, 0.3), filters=("c4", "length"), limit=5,
                   thresholds={"length": {"min_words": 20}, "odd key": {"a.b": [1, 2.5]}}, dedup="minhash", bands=7),
    SampleConfig(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=3),
]


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: type(c).__name__)
def test_every_config_round_trips(cfg, fmt):
    text = dump_settings(type(cfg), cfg, fmt=fmt, header="Settings of run x\npython -m llmfs train --config run.toml")
    assert text.startswith("# Settings of run x\n# python -m llmfs train --config run.toml\n")
    values = parse_settings(text, type(cfg), fmt=fmt)
    assert type(cfg)(**values) == cfg
    assert None not in values.values()   # None fields are left out (TOML has no null): their default is None
    if fmt == "toml":
        assert list(tomllib.loads(text)) == list(values)   # the dataclass's order, each field once


def test_dump_writes_every_field_with_a_value_and_reads_a_runs_json_config():
    run_config = json.loads(json.dumps({**CONFIGS[2].__dict__, "out_dir": "/srv/shards"}))   # lists, extra key
    text = dump_settings(PipelineConfig, run_config)
    data = tomllib.loads(text)
    assert "out_dir" not in data and "shingle_size" in data and data["thresholds"]["length"] == {"min_words": 20}
    assert PipelineConfig(**parse_settings(text, PipelineConfig)) == CONFIGS[2]
    assert tomllib.loads(dump_settings(TrainConfig, {"steps": 3}))["steps"] == 3   # missing fields: defaults


def test_keys_under_the_commands_table_and_yaml_numbers():
    assert parse_settings("[train]\nsteps = 3\nlr = 1e-4\n", TrainConfig) == {"steps": 3, "lr": 1e-4}
    assert parse_settings("generate:\n  temperature: 0\n", SampleConfig, fmt="yaml") == {"temperature": 0.0}
    # PyYAML reads 1e-4 (no dot) as text; unquoted, it is the number meant
    assert parse_settings("lr: 1e-4\nepochs: 2\n", TrainConfig, source="run.yaml") == {"lr": 1e-4, "epochs": 2.0}
    assert parse_settings("[data]\ninputs = ['a.txt']\n", PipelineConfig) == {"inputs": ("a.txt",)}


def refused(text: str, cls: type = TrainConfig, source: str = "run.toml") -> ConfigFileError:
    with pytest.raises(ConfigFileError) as err:
        parse_settings(text, cls, source=source)
    return err.value


def test_an_unknown_key_is_refused_with_its_line_and_the_closest_name():
    e = refused("steps = 3\n\n[train]\nseq_length = 64\n")
    assert e.line == 4 and e.source == "run.toml"
    assert str(e).startswith('run.toml, line 4: unknown setting "seq_length"; did you mean "seq_len"?')
    e = refused("steps: 3\nbatch-size: 4\n", source="run.yaml")
    assert e.line == 2 and 'did you mean "batch_size"' in str(e)
    assert "use one of the settings: max_new_tokens, temperature" in str(refused("zzz = 1\n", SampleConfig))


def test_a_value_of_the_wrong_type_is_refused_naming_what_it_takes():
    e = refused('model = "x"\nsteps = "ten"\n')
    assert (e.line, e.field) == (2, "steps")
    assert str(e) == ('run.toml, line 2: steps takes a whole number, e.g. steps = 100, not the text "ten". Write the '
                      'number without quotes.')
    e = refused("pack = 'yes'\n")
    assert e.field == "pack" and "takes true or false" in str(e)
    e = refused('inputs = "a.txt"\n', PipelineConfig)
    assert e.line == 1 and 'inputs takes a list, e.g. inputs = ["llmfs-corpus"]' in str(e)
    e = refused('inputs = ["a", "b"]\nweights = [1, "x"]\n', PipelineConfig)
    assert e.line == 2 and "weights takes a list of numbers" in str(e)
    e = refused("model: 3\n", source="run.yml")
    assert e.line == 1 and "model takes text, e.g. model: \"llmfs-tiny\"" in str(e)


def test_a_value_out_of_range_is_refused_with_the_configs_own_message_at_its_line():
    e = refused("# my run\n[train]\nlr = 0.01\nsteps = 0\n")
    assert str(e) == "run.toml, line 4: Training steps must be between 1 and 1000000 (got 0)."
    assert (e.field, e.line) == ("steps", 4)
    e = refused('inputs = ["a", "b"]\n\nweights = [1.0]\n', PipelineConfig)
    assert (e.field, e.line) == ("weights", 3) and "give one weight per source" in str(e)
    e = refused("batch_size: 0\n", source="run.yaml")
    assert (e.field, e.line) == ("batch_size", 1)


def test_syntax_errors_name_their_line():
    e = refused("steps = 3\nlr = = 2\n")
    assert e.line == 2 and str(e).startswith("run.toml, line 2: not valid TOML")
    e = refused("train:\n  steps: 3\n   lr: 2\n", source="run.yaml")
    assert e.line == 3 and "not valid YAML" in str(e)
    assert refused("- 1\n- 2\n", source="run.yaml").line == 1   # a list, not settings
    assert refused("steps: 3\nsteps: 4\n", source="run.yaml").line == 2   # set twice
    assert refused("steps = 3\n[train]\nsteps = 4\n").line == 3


def test_another_commands_table_is_refused():
    e = refused("[eval]\ntask = 'mmlu'\n")
    assert e.line == 1
    assert "[eval] holds the settings of `python -m llmfs eval`, but this file is read for train" in str(e)
    assert refused("train:\n  steps: 3\n", EvalConfig, source="e.yaml").line == 1


def test_read_settings_refuses_a_missing_file(tmp_path):
    with pytest.raises(ConfigFileError, match="no such file"):
        read_settings(tmp_path / "nope.toml", TrainConfig)
    (tmp_path / "run.yaml").write_text("train:\n  steps: 4\n")
    assert read_settings(tmp_path / "run.yaml", TrainConfig) == {"steps": 4}


# -- the command line ---------------------------------------------------------------------------------------------
def parsed(argv: list[str]):
    """What `main` parses: the args after the --config file's values became the command's defaults."""
    parser = cli.build_parser()
    return cli._with_settings_file(parser, parser.parse_args(argv), argv)


def test_train_config_file_with_a_flag_over_it(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text(dump_settings(TrainConfig, TrainConfig(steps=50, lr=0.003, pack=True, seq_len=32)))
    cfg = cli.config_from_args(TrainConfig, parsed(["train", "--config", str(f), "--steps", "3", "--no-pack"]))
    assert cfg == TrainConfig(steps=3, lr=0.003, pack=False, seq_len=32)


def test_every_command_with_settings_takes_a_file(tmp_path):
    (tmp_path / "e.yaml").write_text("eval:\n  task: mmlu\n  limit: 5\n")
    assert cli.config_from_args(EvalConfig, parsed(["eval", "--config", str(tmp_path / "e.yaml")])) == \
        EvalConfig(task="mmlu", limit=5)
    (tmp_path / "g.toml").write_text("temperature = 0\nmax_new_tokens = 4\n")
    assert cli.config_from_args(SampleConfig, parsed(["generate", "--prompt", "hi", "--config",
                                                      str(tmp_path / "g.toml")])) == \
        SampleConfig(temperature=0.0, max_new_tokens=4)
    (tmp_path / "p.toml").write_text('[data]\ninputs = ["a.txt", "b.txt"]\nweights = [0.7, 0.3]\nbands = 7\n'
                                     'filters = ["length"]\nthresholds = { length = { min_words = 3 } }\n')
    args = parsed(["data", "--config", str(tmp_path / "p.toml"), "--rows", "4"])
    assert cli.pipeline_config(args) == PipelineConfig(inputs=("a.txt", "b.txt"), weights=(0.7, 0.3), bands=7, rows=4,
                                                       filters=("length",), thresholds={"length": {"min_words": 3}})
    args = parsed(["data", "--config", str(tmp_path / "p.toml"), "--input", "c.txt", "--input", "d.txt"])
    assert cli.pipeline_config(args).inputs == ("c.txt", "d.txt")   # --input replaces the file's inputs
    (tmp_path / "c.toml").write_text('precision = "bf16"\nsteps = 2\n')
    args = parsed(["compare-precision", "--config", str(tmp_path / "c.toml")])
    assert args.steps == 2


def test_a_rule_between_fields_waits_for_the_flags_and_then_names_the_files_line(tmp_path, capsys, llmfs_home):
    f = tmp_path / "q.toml"
    f.write_text('steps = 2\nquantize = "4bit"\n')   # valid only with a LoRA rank, given on the command line
    cfg = cli.config_from_args(TrainConfig, parsed(["train", "--config", str(f), "--lora-rank", "8"]))
    assert (cfg.quantize, cfg.lora_rank, cfg.steps) == ("4bit", 8, 2)
    with pytest.raises(ConfigFileError) as refused:   # a page loading the file takes it alone: refused there
        parse_settings(f.read_text(), TrainConfig, source="q.toml")
    assert refused.value.line == 2
    assert cli.main(["train", "--config", str(f), "--json"]) == cli.EXIT_BAD_INPUT   # no flag makes it valid
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["field"], out["line"]) == ("quantize", 2) and "edit line 2" in out["hint"]
    (tmp_path / "e.toml").write_text('task = "custom"\nlimit = 3\n')   # custom needs --data: a flag gives it
    args = parsed(["eval", "--config", str(tmp_path / "e.toml"), "--data", "mine.jsonl"])
    assert cli.config_from_args(EvalConfig, args) == EvalConfig(task="custom", limit=3, data="mine.jsonl")
    assert not list(llmfs_home.glob("runs/*"))


@pytest.mark.parametrize("text, field, line", [
    ("steps = 3\nseq_lenn = 4\n", None, 2),
    ("steps = 0\n", "steps", 1),
    ("lr = 'fast'\n", "lr", 1),
])
def test_a_bad_file_exits_2_with_its_line_in_the_json(tmp_path, capsys, llmfs_home, text, field, line):
    f = tmp_path / "run.toml"
    f.write_text(text)
    assert cli.main(["train", "--config", str(f), "--json"]) == cli.EXIT_BAD_INPUT
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["field"], out["line"], out["file"]) == (field, line, str(f))
    assert out["error"].startswith(f"{f}, line {line}: ")
    assert not list(llmfs_home.glob("runs/*"))   # refused before any run is made


def test_data_refuses_a_run_with_no_inputs_and_an_out_folder_holding_shards(tmp_path, capsys, llmfs_home):
    assert cli.main(["data", "--json"]) == cli.EXIT_BAD_INPUT
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["field"] == "inputs"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "shard-000000.tar").write_bytes(b"")
    assert cli.main(["data", "--input", "llmfs-corpus", "--out", str(tmp_path / "out"), "--json"]) == 2
    assert "already holds shards" in json.loads(capsys.readouterr().out.splitlines()[-1])["error"]
