"""One config path: a complete YAML file gives every value, ``key=value`` overrides it.

The YAML file is the schema: an override or a user file may only name keys that the task's
reference config has, with a value of a compatible type. The resolved config is written next
to the outputs and stored in every checkpoint.
"""

import copy
import difflib
import json
from importlib import resources
from pathlib import Path

import yaml

from .checkpoint import atomic_write

# The YAML files ship inside the package: splitbrain/configs is a symbolic link to the
# checkout's configs/ (one copy, where people read and copy them), and the wheel holds the files
# themselves. Resolved, so that in a checkout this is configs/ and its parent the checkout.
CONFIG_DIR = Path(str(resources.files("splitbrain") / "configs")).resolve()


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def load_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values")
    return data


def flatten(cfg, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


# Keys that were renamed, with what to write instead.
RENAMED = {"pool": "blur: 1 for pool: max, blur: 3 for pool: maxblur (the anti-aliasing "
                   "filter size; 2 and 5 are new)"}


def _unknown_key(key, valid):
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if key.split(".")[-1] in RENAMED:
        hint = f"; it was renamed: write {RENAMED[key.split('.')[-1]]}"
    return ConfigError(f"unknown config key {key!r}{hint} (valid keys: {', '.join(sorted(valid))})")


def _coerce(key, value, reference):
    """Check ``value`` against the type of the reference config's value at ``key``."""
    if reference is None:  # an optional path or name: null, or what the user wrote
        return value
    if value is None:  # a blank value or null, for a key that needs one
        raise ConfigError(f"config key {key!r} needs a value (like {reference!r}); it is empty "
                          f"or null, which only keys whose reference value is null accept")
    if isinstance(reference, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(reference, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(reference, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:  # YAML 1.1 reads "3e-5" (no dot) as a string
            return float(value)
        except (TypeError, ValueError):
            pass
    elif isinstance(reference, str):
        if isinstance(value, str):
            return value
    elif isinstance(reference, list):
        if isinstance(value, list):
            return value
    elif isinstance(reference, dict):
        if isinstance(value, dict):
            return value
    raise ConfigError(f"config key {key!r} expects {type(reference).__name__} "
                      f"(like {reference!r}), got {value!r}")


def validate(cfg, schema, source="config"):
    """Raise ConfigError if ``cfg`` has keys ``schema`` lacks or values of the wrong type."""
    flat, ref = flatten(cfg), flatten(schema)
    for key, value in flat.items():
        if key not in ref:
            raise _unknown_key(key, list(ref))
        try:
            _coerce(key, value, ref[key])
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    missing = sorted(set(ref) - set(flat))
    if missing:
        raise ConfigError(f"{source} is missing keys {missing}; every config file lists every "
                          f"key (copy them from the reference config)")


class _Text(str):
    """An override's value as written, typed by :func:`apply_overrides` once its key is known."""


NULLS = ("", "null", "Null", "NULL", "~")  # what YAML reads as None


def _parse_text(key, text, reference):
    """The value of override text for ``key``, read according to the reference value's type.

    A string key (or an optional one, whose reference is null) takes the text as written, so
    paths like ``@scratch/x`` or ``[2019]/photos`` need no quoting; YAML still reads it when
    that gives a string (quotes are removed) and the text holds no comment. Other keys are
    YAML scalars or lists, so ``3e-4``, ``true`` and ``[1, 2]`` work.
    """
    text = text.strip()
    if text in NULLS:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        if reference is None or isinstance(reference, str):
            return text
        problem = str(err).splitlines()[0]
        raise ConfigError(f"cannot read the value of {key!r}: {text!r} is not valid YAML "
                          f"({problem}); write it like {key}={json.dumps(reference)}") from None
    if reference is None or isinstance(reference, str):
        return value if isinstance(value, str) and " #" not in text else text
    return value


def parse_overrides(items):
    """``["optim.lr=0.1", "--run.out", "x"]`` -> {"optim.lr": "0.1", "run.out": "x"}.

    The values stay text until :func:`apply_overrides` reads each by its key's type.
    """
    out, items = {}, list(items)
    while items:
        item = items.pop(0)
        if item.startswith("--"):
            item = item[2:]
            if "=" not in item:
                if not items:
                    raise ConfigError(f"--{item} needs a value")
                item = f"{item}={items.pop(0)}"
        if "=" not in item:
            raise ConfigError(f"cannot parse override {item!r}; write key=value, e.g. optim.lr=1e-4")
        key, text = item.split("=", 1)
        out[key.strip()] = _Text(text)
    return out


def apply_overrides(cfg, overrides):
    """Return a copy of ``cfg`` with dotted-key ``overrides`` set, type-checked.

    Values are checked against the task's reference config (its value's type; null only where
    the reference is null), so a config that sets ``color.prior`` may still clear it. Values
    from :func:`parse_overrides` are read by that type; others (e.g. a command-line flag's
    string) are taken as they are.
    """
    cfg = copy.deepcopy(cfg)
    ref = flatten(cfg)
    schema = flatten(reference_config(cfg.get("task")))
    for key, value in overrides.items():
        if key not in ref:
            raise _unknown_key(key, list(ref))
        expected = schema.get(key, ref[key])
        if isinstance(value, _Text):
            value = _parse_text(key, value, expected)
        value = _coerce(key, value, expected)
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return cfg


def reference_config(task):
    """The reference config of ``task`` (``configs/{task}_demo.yaml``): the schema of its keys.

    A task without one is an error, never an unchecked config: the file is part of the package.
    """
    if not isinstance(task, str) or not task:
        raise ConfigError(f"the config names no task (its 'task' key is {task!r})")
    path = CONFIG_DIR / f"{task}_demo.yaml"
    if not path.is_file():
        known = sorted(p.name[:-len("_demo.yaml")] for p in CONFIG_DIR.glob("*_demo.yaml"))
        raise ConfigError(f"no reference config for task {task!r}: {path} is missing (tasks with "
                          f"one: {', '.join(known) or 'none; this installation lacks configs/'})")
    return load_yaml(path)


def resolve(task, config_path=None, overrides=()):
    """Load the config of ``task`` (its demo config unless a file is given) and apply overrides.

    Args:
        task: "colorize", "splitbrain" or "probe"; selects the reference config
            ``configs/{task}_demo.yaml`` that defines the valid keys.
        config_path: optional YAML file with every key of the reference.
        overrides: ``key=value`` strings.
    """
    reference = reference_config(task)
    cfg = reference
    if config_path is not None:
        cfg = load_yaml(config_path)
        validate(cfg, reference, source=str(config_path))
        if cfg.get("task", task) != task:
            raise ConfigError(f"{config_path} is a config for task {cfg['task']!r}, not {task!r}")
    return apply_overrides(cfg, parse_overrides(overrides))


def add_new_keys(cfg, task):
    """A stored config (e.g. of a run being resumed) with the keys its task gained since.

    Keys that the task's reference config has and ``cfg`` lacks are added at the reference's
    values, which keep the old behaviour (e.g. ``loss.perceptual_weight: 0``).

    Returns:
        (the completed copy, the dotted names of the keys added).
    """
    reference = reference_config(task)
    cfg, added = copy.deepcopy(cfg), []

    def fill(node, ref, prefix):
        for key, value in ref.items():
            if key not in node:
                node[key] = copy.deepcopy(value)
                added.extend(flatten({key: value}, prefix) if isinstance(value, dict) and value
                             else [prefix + key])
            elif isinstance(value, dict) and isinstance(node[key], dict):
                fill(node[key], value, f"{prefix}{key}.")

    fill(cfg, reference, "")
    return cfg, added


def save(cfg, path):
    """Write the resolved config as YAML (atomically)."""
    text = yaml.safe_dump(cfg, sort_keys=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
