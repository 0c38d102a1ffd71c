"""Config loading shared by train_video.py and sample/: a dataclass schema, then a YAML file, then key=value.

The schema is where every key is documented, next to its default; an unknown or mistyped key is an error
that names the key and where it came from.
"""
import argparse
import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, KeyValidationError, ValidationError

def read_config_file(config_path):
    """The YAML file as a DictConfig; a syntax error or a top level that is not a mapping names the file (and line)."""
    if not Path(config_path).is_file():
        raise FileNotFoundError(f"config file not found: {config_path}")
    try:
        values = OmegaConf.load(config_path)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "an unknown line"
        context = f" ({error.context})" if error.context else ""
        raise ValueError(f"config file {config_path}: YAML syntax error at {where}: {error.problem}{context}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"config file {config_path}: not valid YAML: {error}") from None
    if not isinstance(values, DictConfig):
        raise ValueError(f"config file {config_path}: the top level must be a mapping of config keys "
                         f"(key: value lines), not a {type(values).__name__.removesuffix('Config').lower()}")
    return values


def int_keyed_fields(schema):
    """Schema keys typed Dict[int, ...] (frame_expressions): a dotlist `key.0=...` gives them the string key "0"."""
    def int_keyed(hint):
        if typing.get_origin(hint) is typing.Union:
            return any(int_keyed(arg) for arg in typing.get_args(hint))
        return typing.get_origin(hint) is dict and typing.get_args(hint)[:1] == (int,)

    return [f.name for f in dataclasses.fields(schema) if int_keyed(f.type)]


def with_int_keys(values, names, source):
    """values with the string keys of the int-keyed dicts `names` turned into ints ("0" -> 0, "-1" -> -1)."""
    for name in names:
        node = values.get(name)
        if not isinstance(node, DictConfig):
            continue
        converted = {}
        for key, value in node.items_ex(resolve=False):
            try:
                converted[int(key) if isinstance(key, str) else key] = value
            except ValueError:
                raise ValueError(f"{source}: config key '{name}.{key}': {name} is keyed by frame index, e.g. "
                                 f"{name}.0=clean {name}.-1=t, or {name}='{{0: clean, -1: t}}'") from None
        values[name] = converted
    return values


def merge_config(schema, config_path=None, overrides=(), values=None):
    """Schema defaults <- YAML file <- key=value overrides <- a dict of values (a Python caller's keyword
    arguments); raises ValueError naming a bad key."""
    cfg = OmegaConf.structured(schema)
    sources = []
    if config_path is not None:
        sources.append((f"config file {config_path}", read_config_file(config_path)))
    malformed = [item for item in overrides if "=" not in item]
    if malformed:
        raise ValueError(f"command-line overrides must look like key=value, got {malformed}")
    sources.append(("command line", OmegaConf.from_dotlist(list(overrides))))
    if values:
        sources.append(("arguments", OmegaConf.create(dict(values))))
    int_keyed = int_keyed_fields(schema)
    for source, values in sources:
        try:
            cfg = OmegaConf.merge(cfg, with_int_keys(values, int_keyed, source))
        except ConfigKeyError as error:
            raise ValueError(f"{source}: unknown config key {error.full_key!r}") from None
        except (ValidationError, KeyValidationError) as error:
            raise ValueError(f"{source}: bad value for config key {error.full_key!r}: {error.msg}") from None
    if "mixed_precision" in cfg and cfg.mixed_precision in ("False", "false"):
        cfg.mixed_precision = "no"  # YAML reads an unquoted `no` (and Latte's `False`) as a boolean
    return cfg


def field_docs(schema):
    """{key: (section header lines, comment lines)} read from the schema's source, base classes first.

    The comment beside a default documents its key, and comment-only lines below it continue that comment;
    a `# --- section ---` line (continued until a line ending in `---`) heads the keys below it.
    """
    docs = {}
    for cls in reversed(schema.__mro__):
        if dataclasses.is_dataclass(cls):
            docs.update(class_field_docs(cls))
    return docs


def class_field_docs(cls):
    """field_docs of the fields one dataclass declares itself."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments, code_rows = {}, set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_rows.update(range(token.start[0], token.end[0] + 1))
    fields = {node.lineno: node for node in ast.parse(source).body[0].body
              if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    docs, header, current = {}, [], None
    row, last_row = 1, len(source.splitlines())
    while row <= last_row:
        node = fields.get(row)
        if node is not None:
            current = [comments[r] for r in range(node.lineno, node.end_lineno + 1) if r in comments]
            docs[node.target.id] = (header, current)
            header, row = [], node.end_lineno + 1
            continue
        if row in comments and row not in code_rows:
            text = comments[row]
            if text.startswith("---") or (header and not header[-1].endswith("---")):
                header.append(text)
                current = None
            elif current is not None:
                current.append(text)
        else:
            current = None  # a blank or code line ends a comment
        row += 1
    return docs


def key_checker(cfg):
    """require(ok, key, why) for a validate function: raises ValueError naming the config key and its value."""
    def require(ok, key, why):
        if not ok:
            raise ValueError(f"config key {key!r} = {cfg[key]!r}: {why}")

    return require


def format_default(value):
    """A default as it is written on the command line: null, true/false, numbers, strings, [..], {..}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def config_help(schema):
    """Every key of a config dataclass with its default and its comment, for argparse's epilog (--help)."""
    docs = field_docs(schema)
    defaults = OmegaConf.to_container(OmegaConf.structured(schema))  # what merge_config starts from
    lines = [f"config keys ({schema.__name__}), shown as key=default; set them in the --config YAML file or as",
             "key=value arguments (which override the file):"]
    for name, default in defaults.items():
        header, comment = docs.get(name, ([], []))
        if header:
            lines += ["", *header]
        lines.append(f"  {name}={format_default(default)}")
        lines += [f"      {text}" for text in comment]
    return "\n".join(lines)


def parse_command_line(schema, load, description, argv=None):
    """`--config FILE key=value ...` -> load(FILE, overrides); --help lists every key of the schema."""
    parser = argparse.ArgumentParser(description=description, epilog=config_help(schema),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=f"YAML file of {schema.__name__} keys")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seed=1")
    args = parser.parse_args(argv)
    return load(args.config, args.overrides)
