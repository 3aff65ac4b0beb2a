"""The config system: complete YAML files, typed overrides, clear errors."""

import re
from pathlib import Path

import pytest
import torch
import yaml

from splitbrain import config

# Run configs (train, probe); a study file (task: study) lists runs, and tests/test_study.py
# checks that every run it makes resolves.
CONFIGS = sorted(p for p in Path(config.CONFIG_DIR).glob("*.yaml")
                 if yaml.safe_load(p.read_text()).get("task") != "study")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_has_exactly_the_keys_of_its_task(path):
    cfg = config.load_yaml(path)
    reference = config.load_yaml(config.CONFIG_DIR / f"{cfg['task']}_demo.yaml")
    config.validate(cfg, reference, source=path.name)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_key_is_commented(path):
    lines = [line for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    uncommented = [line for line in lines if ":" in line and "#" not in line
                   and not line.rstrip().endswith(":")]
    assert not uncommented, f"{path.name}: keys without a comment: {uncommented}"


def test_overrides_are_parsed_and_typed():
    cfg = config.resolve("colorize", overrides=["optim.lr=3e-5", "--run.out", "x/y",
                                                "optim.betas=[0.5, 0.9]", "color.prior=null"])
    assert cfg["optim"]["lr"] == 3e-5 and isinstance(cfg["optim"]["lr"], float)
    assert cfg["run"]["out"] == "x/y"
    assert cfg["optim"]["betas"] == [0.5, 0.9]
    assert cfg["color"]["prior"] is None


def test_int_given_for_float_is_accepted_as_float():
    cfg = config.resolve("colorize", overrides=["optim.lr=1"])
    assert cfg["optim"]["lr"] == 1.0 and isinstance(cfg["optim"]["lr"], float)


def test_unknown_key_names_the_closest_valid_ones():
    with pytest.raises(config.ConfigError, match=r"'optim.learning_rate'.*optim\.lr"):
        config.resolve("colorize", overrides=["optim.learning_rate=0.1"])
    with pytest.raises(config.ConfigError, match=r"did you mean .*optim\.batch_size"):
        config.resolve("colorize", overrides=["optim.batchsize=8"])


def test_wrong_type_is_an_error():
    with pytest.raises(config.ConfigError, match="optim.iterations.*int"):
        config.resolve("colorize", overrides=["optim.iterations=many"])
    with pytest.raises(config.ConfigError, match="run.channels_last.*bool"):
        config.resolve("colorize", overrides=["run.channels_last=3"])


def test_user_file_with_a_typo_or_missing_key(tmp_path):
    good = config.load_yaml(config.CONFIG_DIR / "colorize_demo.yaml")
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["optim"]["lrr"] = bad["optim"].pop("lr")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(config.ConfigError, match=r"'optim.lrr'.*optim\.lr"):
        config.resolve("colorize", path)
    del good["run"]["seed"]
    path.write_text(yaml.safe_dump(good))
    with pytest.raises(config.ConfigError, match=r"missing keys \['run.seed'\]"):
        config.resolve("colorize", path)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.resolve("colorize", tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.resolve("colorize", tmp_path / "broken.yaml")


def test_saved_config_reloads_identically(tmp_path):
    cfg = config.resolve("colorize", overrides=["optim.lr=0.5"])
    config.save(cfg, tmp_path / "config.yaml")
    assert config.load_yaml(tmp_path / "config.yaml") == cfg


def _code_text():
    root = config.CONFIG_DIR.parent
    files = list((root / "splitbrain").rglob("*.py")) + list((root / "tools").glob("*.py"))
    return "\n".join(p.read_text() for p in files)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_key_is_read_by_the_code(path):
    """No dead keys: each leaf is read as cfg[...]["leaf"] or is a field of the dataclass the
    section is unpacked into (SGDRecipe(**cfg["optim"])). Keys the code reads but a file lacks
    are caught by the schema check above and by the CLI tests, which run every task."""
    code = _code_text()
    unread = [key for key in config.flatten(config.load_yaml(path))
              if key != "task" and not re.search(
                  rf"\[\s*[\"']{re.escape(key.split('.')[-1])}[\"']\s*\]"
                  rf"|^\s+{re.escape(key.split('.')[-1])}\s*:", code, re.M)]
    assert not unread, f"{path.name}: keys no code reads: {unread}"


def test_imagenet_split_brain_recipe_predicts_at_12x12_from_180_crops():
    from splitbrain import tasks
    from splitbrain.models import build_model

    cfg = config.resolve("splitbrain", config.CONFIG_DIR / "splitbrain_alexnet_imagenet.yaml")
    spec = tasks.TASKS["splitbrain"].model_spec(cfg)
    model = build_model(spec["name"], **spec["kwargs"]).eval()
    crop = cfg["data"]["crop"]
    assert crop == 180
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, crop, crop))
    assert [tuple(o.shape) for o in outputs] == [(1, 313, 12, 12), (1, 50, 12, 12)]
    # The demo keeps the classic AlexNet padding: 10x10 at 180 px.
    demo = tasks.TASKS["splitbrain"].model_spec(config.resolve("splitbrain"))
    small = build_model(demo["name"], **demo["kwargs"]).eval()
    with torch.no_grad():
        assert small(torch.zeros(1, 3, 180, 180))[0].shape[-2:] == (10, 10)


@pytest.mark.parametrize("override", ["optim.lr=", "optim.batch_size=null", "run.out=~",
                                      "data.crop= "])
def test_an_empty_or_null_value_needs_a_key_that_may_be_null(override):
    key = override.split("=")[0]
    with pytest.raises(config.ConfigError, match=rf"'{re.escape(key)}' needs a value \(like "):
        config.resolve("colorize", overrides=[override])


def test_null_clears_an_optional_key_even_where_the_config_file_sets_it(tmp_path):
    cfg = config.load_yaml(config.CONFIG_DIR / "colorize_demo.yaml")
    cfg["color"]["prior"] = "prior.npy"
    path = tmp_path / "with_prior.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert config.resolve("colorize", path)["color"]["prior"] == "prior.npy"
    assert config.resolve("colorize", path, ["color.prior=null"])["color"]["prior"] is None
    assert config.resolve("colorize", path, ["color.prior="])["color"]["prior"] is None


def test_a_config_file_with_a_blank_value_names_the_key(tmp_path):
    text = (config.CONFIG_DIR / "probe_demo.yaml").read_text()
    path = tmp_path / "blank.yaml"
    path.write_text(re.sub(r"(?m)^  lr: 0.01 ", "  lr: ", text))
    with pytest.raises(config.ConfigError, match=r"blank.yaml: .*'optim.lr' needs a value"):
        config.resolve("probe", path)
    # A blank value where the reference is null stays allowed.
    path.write_text(re.sub(r"(?m)^  ckpt: null ", "  ckpt: ", text))
    assert config.resolve("probe", path)["encoder"]["ckpt"] is None


def test_a_string_key_takes_its_value_as_written():
    cfg = config.resolve("colorize", overrides=[
        "run.out=@scratch/x", "data.train=[2019]/photos", "data.val= *x ", "run.device='cuda:0'",
        "data.root=my data #1", "color.prior=&anchor/prior.npy"])
    assert cfg["run"]["out"] == "@scratch/x"
    assert cfg["data"]["train"] == "[2019]/photos"
    assert cfg["data"]["val"] == "*x"
    assert cfg["run"]["device"] == "cuda:0"  # quotes still work
    assert cfg["data"]["root"] == "my data #1"  # not a YAML comment
    assert cfg["color"]["prior"] == "&anchor/prior.npy"  # optional keys too


def test_a_value_that_is_not_yaml_names_the_key():
    with pytest.raises(config.ConfigError, match=r"'optim.betas'.*not valid YAML.*"
                                                 r"optim\.betas=\[0\.9, 0\.99\]"):
        config.resolve("colorize", overrides=["optim.betas=[0.5, 0.9"])
    with pytest.raises(config.ConfigError, match=r"'optim.lr'.*not valid YAML"):
        config.resolve("colorize", overrides=["optim.lr=@1"])


def test_a_task_without_a_reference_config_is_an_error_not_an_unchecked_config():
    with pytest.raises(config.ConfigError, match=r"no reference config for task 'nope'.*"
                                                 r"nope_demo\.yaml is missing.*colorize"):
        config.resolve("nope")
    cfg = config.resolve("colorize")
    cfg["task"] = "nope"  # e.g. an installation whose configs/ lacks the file
    with pytest.raises(config.ConfigError, match="no reference config for task 'nope'"):
        config.apply_overrides(cfg, config.parse_overrides(["optim.lr=1"]))
    del cfg["task"]
    with pytest.raises(config.ConfigError, match="names no task"):
        config.apply_overrides(cfg, {})
