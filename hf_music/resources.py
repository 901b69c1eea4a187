"""Files shipped inside the package: demo prompts (MAESTRO, CC BY-NC-SA 4.0)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
PROMPTS_DIR = ASSETS / "prompts"


def bundled_prompts() -> dict[str, Path]:
    """Name -> path of the bundled MIDI prompts (see assets/prompts/README.md for attribution)."""
    return {path.stem: path for path in sorted(PROMPTS_DIR.glob("*.mid"))}


DEFAULT_MODEL_DIR = ASSETS / "default_model"


def load_default_model(device=None):
    """(model, tokenizer) of the checkpoint embedded in the package, loaded offline."""
    from .music_transformer.modeling_music_transformer import MusicTransformerForCausalLM
    from .music_transformer.tokenization_music_transformer import MidiTokenizer

    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"no embedded default model at {DEFAULT_MODEL_DIR}; pass a model folder or Hub id instead"
        )
    model = load_weights(MusicTransformerForCausalLM, DEFAULT_MODEL_DIR)
    tokenizer = MidiTokenizer.from_pretrained(DEFAULT_MODEL_DIR)
    return (model.to(device) if device else model).eval(), tokenizer


def load_model(name_or_path: str | None = None, device=None, trust_remote_code: bool = False):
    """(model, tokenizer) from a checkpoint folder or Hub id, or the embedded default for None.

    A checkpoint whose config says ``model_type: music_transformer`` is loaded with this
    package's own classes: code files inside the checkpoint are never run. Any other model
    needs ``trust_remote_code=True`` (as in transformers), which runs the checkpoint's code.
    """
    if name_or_path is None:
        return load_default_model(device)
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import cached_file

    from .music_transformer.modeling_music_transformer import MusicTransformerForCausalLM

    offline = _offline_source(name_or_path)
    config_file = cached_file(name_or_path, "config.json", local_files_only=offline)
    model_type = json.loads(Path(config_file).read_text(encoding="utf-8")).get("model_type")
    if model_type == MusicTransformerForCausalLM.config_class.model_type:
        model = load_weights(MusicTransformerForCausalLM, name_or_path, local_files_only=offline)
        tokenizer = saved_tokenizer(name_or_path, local_files_only=offline)
    elif trust_remote_code:
        model = load_weights(
            AutoModelForCausalLM, name_or_path, trust_remote_code=True, local_files_only=offline
        )
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, trust_remote_code=True, local_files_only=offline
        )
    else:
        raise ValueError(
            f"{name_or_path} holds a {model_type!r} model, not a music_transformer: loading it would run "
            "code from the checkpoint; pass trust_remote_code=True (--trust_remote_code) if you trust it"
        )
    return (model.to(device) if device else model).eval(), tokenizer


def _offline_source(name_or_path) -> bool:
    """Whether a checkpoint must come from the local cache: False for a folder or a reachable Hub id.
    A path that names no folder, or a name that is no Hub id, is a CheckpointError of one line."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    name, path = str(name_or_path), Path(name_or_path).expanduser()
    if path.is_dir():
        return False
    try:
        validate_repo_id(name)
        hub_id = True
    except HFValidationError:
        hub_id = False
    # Written as a path, or under a folder that is here: the user meant a folder on this machine.
    under_local_folder = len(path.parts) > 1 and Path(path.parts[0]).is_dir()
    if not hub_id or name.startswith((".", "/", "~")) or path.exists() or under_local_folder:
        raise CheckpointError(f"{name}: no checkpoint folder there (a Hub id is written user/name)")
    try:  # an unreachable Hub would be retried for 30 s, a warning a retry; the cache serves when it can
        return not hub_reachable(name)
    except OSError as error:
        raise CheckpointError(str(error)) from error


def hub_reachable(repo_id: str) -> bool:
    """True when the Hub answers; False when it does not (or HF_HUB_OFFLINE is set) but the cache
    holds `repo_id`; else an OSError of one line naming the endpoint."""
    from huggingface_hub import constants, get_session, try_to_load_from_cache

    from .hub import PUBLISH_ERRORS

    cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    if constants.HF_HUB_OFFLINE:
        if cached:
            return False
        raise OSError(f"{repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        get_session().head(constants.ENDPOINT, timeout=10)  # any answer will do: the Hub is there
        return True
    except PUBLISH_ERRORS as error:
        if cached:
            return False
        raise OSError(
            f"{repo_id}: {constants.ENDPOINT} cannot be reached ({type(error).__name__}) and the local "
            "cache does not hold it"
        ) from None


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: no such folder or Hub id, a Hub out of reach, or weights
    that are unreadable or do not fill the model its config.json describes."""


def load_weights(model_class, name_or_path, **kwargs):
    """``model_class.from_pretrained`` from safetensors, refusing what transformers lets through
    with a warning: tensors the config's model needs but the file lacks (they would be random:
    a config with n_layer 2000 over 4 saved layers), tensors it has no place for, wrong shapes;
    and a truncated or corrupt weights file, in one line naming it."""
    from safetensors import SafetensorError
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()  # transformers' load report is a table; the error below says it
    logging.disable_progress_bar()  # a bar over a few tensors loaded in milliseconds
    try:
        model, info = model_class.from_pretrained(
            name_or_path, use_safetensors=True, output_loading_info=True, ignore_mismatched_sizes=True,
            **kwargs,
        )  # fmt: skip
    except SafetensorError as error:
        raise CheckpointError(
            f"{weights_file(name_or_path)} is not a readable safetensors file: {error}"
        ) from error
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
    problems = {
        "missing_keys": "lacks {n} tensor(s) its config.json needs",
        "unexpected_keys": "holds {n} tensor(s) its config.json has no place for",
        "mismatched_keys": "holds {n} tensor(s) of another shape than its config.json gives",
    }
    for key, problem in problems.items():
        names = sorted(str(name[0] if isinstance(name, tuple) else name) for name in info.get(key) or ())
        if names:
            raise CheckpointError(
                f"{weights_file(name_or_path)} {problem.format(n=len(names))} (e.g. {names[0]}): "
                "a truncated or mismatched checkpoint"
            )
    return model


def weights_file(name_or_path) -> str:
    """The weights a checkpoint folder or Hub id holds, for an error message."""
    folder = Path(name_or_path)
    sharded = folder / "model.safetensors.index.json"
    return str(sharded if sharded.is_file() else folder / "model.safetensors")


def saved_tokenizer(name_or_path: str, local_files_only: bool = False):
    """The tokenizer saved in a folder or Hub repo, with this package's class named by its
    tokenizer_config.json (MidiTokenizer or MiditokTokenizer): no code from the folder runs."""
    import json

    from transformers.utils import cached_file

    from .music_transformer.tokenization_miditok import MiditokTokenizer
    from .music_transformer.tokenization_music_transformer import FAST_TOKENIZER_CLASS, MidiTokenizer

    found = cached_file(
        name_or_path, "tokenizer_config.json", _raise_exceptions_for_missing_entries=False,
        local_files_only=local_files_only,
    )  # fmt: skip
    config = json.loads(Path(found).read_text(encoding="utf-8")) if found else {}
    name = config.get("tokenizer_class")
    if name == FAST_TOKENIZER_CLASS:  # the fast text tokenizer for plain transformers: auto_map names ours
        auto = (config.get("auto_map") or {}).get("AutoTokenizer") or [None]
        name = auto[0].rsplit(".", 1)[-1] if auto[0] else MidiTokenizer.__name__
    classes = {cls.__name__: cls for cls in (MidiTokenizer, MiditokTokenizer)}
    if name is not None and name not in classes:
        raise ValueError(
            f"{name_or_path}: tokenizer class {name!r} is not one of hf_music's ({', '.join(classes)})"
        )
    return classes.get(name, MidiTokenizer).from_pretrained(name_or_path, local_files_only=local_files_only)


PERFORMANCE = "performance"  # --tokenizer's default: the Music Transformer's performance events


def load_tokenizer(spec: str | None = None, options: str | dict | None = None):
    """The tokenizer a command names with --tokenizer (and --tokenizer_options):

    None or "performance": a new MidiTokenizer (its options as keyword arguments);
    a miditok vocabulary (REMI, TSD, MIDILike, Structured, MMM): a new MiditokTokenizer with
    those miditok config options ("use_programs=true,num_velocities=16");
    anything else: a saved tokenizer folder or Hub id (`saved_tokenizer`; options refused).
    """
    from .music_transformer.tokenization_miditok import VOCABULARIES, MiditokTokenizer, parse_options
    from .music_transformer.tokenization_music_transformer import MidiTokenizer

    options = parse_options(options) if isinstance(options, str) or options is None else dict(options)
    if spec is None or spec == PERFORMANCE:
        return MidiTokenizer(**options)
    if spec in VOCABULARIES:
        return MiditokTokenizer.from_miditok(spec, **options)
    if options:
        raise ValueError(f"--tokenizer_options build a new tokenizer; {spec} is a saved one")
    if not Path(spec).is_dir() and "/" not in spec:
        raise ValueError(
            f"--tokenizer {spec!r}: not {PERFORMANCE!r}, a miditok vocabulary ({', '.join(VOCABULARIES)}) "
            "or a saved tokenizer folder"
        )
    return saved_tokenizer(spec)


def override_tokenizer(model, tokenizer, spec: str | None):
    """The checkpoint's tokenizer, or --tokenizer's when given (its vocabulary must fit the model's)."""
    if spec is None:
        return tokenizer
    chosen = load_tokenizer(spec)
    if len(chosen) > model.config.vocab_size:
        raise ValueError(
            f"--tokenizer {spec} has {len(chosen)} ids; the model knows {model.config.vocab_size}"
        )
    return chosen
