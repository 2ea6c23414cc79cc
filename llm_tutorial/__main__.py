"""The command line: ``python -m llm_tutorial train ...`` and ``python -m llm_tutorial sample ...``.

Train the character-level GPT of chapter 5 (or any YAML config), resume a run that was
interrupted, and sample text from a checkpoint::

    python -m llm_tutorial train --config shakespeare-char --out runs/shakespeare
    python -m llm_tutorial train --resume runs/shakespeare
    torchrun --nproc_per_node=2 -m llm_tutorial train --config llm_tutorial/configs/shakespeare_char.yaml
    python -m llm_tutorial sample --checkpoint runs/shakespeare --prompt "ROMEO:"

Check a machine, and set up the data offline from files downloaded by hand::

    python -m llm_tutorial doctor
    python -m llm_tutorial data prepare ~/Downloads

A mistake (a bad config, a missing file, a device this machine lacks, a run that diverged) ends
as one line saying what to do, with exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from torch import nn


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of both commands; ``--help`` prints every option."""
    from .train.run_config import PRESETS

    parser = argparse.ArgumentParser(prog="python -m llm_tutorial", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,sample,doctor,data}")

    train = commands.add_parser(
        "train", help="train a GPT from a YAML config or a preset",
        description="Train a GPT. A config has sections model (a GPT preset and GPTConfig fields), data "
                    "(corpus, tokenizer, val_fraction, context_length) and train (TrainConfig fields). "
                    "Under torchrun, every process runs this same command.")
    train.add_argument("--config", metavar="FILE|PRESET",
                       help=f"a YAML config file, or a preset: {', '.join(PRESETS)}. "
                            "Optional with --resume (the checkpoint holds its run's config).")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one setting, e.g. --set train.max_steps=500 --set model.dropout=0.1 "
                            "(the value is read as YAML; repeat for several)")
    train.add_argument("--resume", metavar="DIR",
                       help="continue the run whose checkpoints are in DIR (its newest complete one), or from "
                            "one checkpoint directory step_XXXXXXXX; the continuation is exactly the "
                            "uninterrupted run")
    train.add_argument("--out", metavar="DIR",
                       help="where checkpoints go (default: the --resume directory, else runs/<config name>)")
    train.add_argument("--device", default=None,
                       help="cpu, cuda, cuda:N or mps (default: the config's device, else the best available); "
                            "the same as --set device=...")
    train.add_argument("--print-config", action="store_true",
                       help="print the resolved config as YAML and exit without training")

    sample = commands.add_parser("sample", help="generate text from a trained checkpoint",
                                 description="Generate text from a checkpoint written by the train command.")
    sample.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="a run directory (its newest checkpoint is used) or one checkpoint directory")
    sample.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    sample.add_argument("--max-new-tokens", type=int, default=200, metavar="N", help="tokens to generate (default 200)")
    sample.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="divide the logits by T before sampling: < 1 is more conservative, > 1 more "
                             "varied (default 1.0)")
    sample.add_argument("--top-k", type=int, default=None, metavar="K",
                        help="sample only among the K most likely tokens (default: all)")
    sample.add_argument("--num-samples", type=int, default=1, metavar="N", help="independent samples (default 1)")
    sample.add_argument("--seed", type=int, default=1337, help="random seed of the sampling (default 1337)")
    sample.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")

    doctor = commands.add_parser(
        "doctor", help="check this machine: Python, PyTorch, optional packages, data, Triton, Chromium",
        description="Report what the book needs and what this machine has, with the command that fixes each "
                    "missing piece. Exit code 1 when something a chapter needs is missing.")
    doctor.add_argument("--offline", action="store_true",
                        help="count a data file that is not on disk as missing (it cannot be downloaded on first use)")
    data = commands.add_parser("data", help="set up the book's data from files downloaded by hand",
                               description="Offline set-up of the book's data files.")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="{prepare}")
    prepare = data_commands.add_parser(
        "prepare", help="check downloaded upstream files and write the book's data files",
        description="Recognise the book's data files among the files in FOLDER, in their upstream form (Tiny "
                    "Shakespeare's input.txt, GPT-2's vocab.bpe and encoder.json, Tatoeba's cmn-eng.zip or cmn.txt) "
                    "or already normalised, check their SHA-256 and write them where the package finds them.")
    prepare.add_argument("folder", metavar="FOLDER", help="the folder that holds the downloaded files")
    prepare.add_argument("--out", metavar="DIR", default=None,
                         help="where to write the book's files (default: the download cache, "
                              "$LLM_TUTORIAL_CACHE or ~/.cache/llm_tutorial, where the package looks by itself)")
    for command in (train, sample, doctor, prepare):  # --debug is accepted after the command too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the full traceback of an error")
    return parser


def run_train(args: argparse.Namespace) -> None:
    """The ``train`` command."""
    from .train.checkpoint import latest_checkpoint, load_checkpoint
    from .train.launch import train_from_config
    from .train.run_config import apply_overrides, load_run_config, run_config_from_dict

    if args.config is None and args.resume is None:
        raise ValueError("give --config FILE|PRESET, or --resume DIR to continue a run")
    if args.device is not None:
        args.overrides = [*args.overrides, f"device={args.device}"]
    if args.config is not None:
        run = load_run_config(args.config, args.overrides)
        name = Path(args.config).stem
    else:
        if latest_checkpoint(args.resume) is None:
            raise FileNotFoundError(f"--resume {args.resume}: no complete checkpoint there")
        saved = load_checkpoint(args.resume).extra["metadata"]["run"]
        run = run_config_from_dict(apply_overrides(saved, args.overrides), source=f"the run in {args.resume}")
        name = None
    if args.print_config:
        print(yaml.safe_dump(run.to_dict(), sort_keys=False), end="")
        return
    out = args.out or (_run_directory(args.resume) if args.resume else Path("runs") / name)
    train_from_config(run, out, resume=args.resume)


def _run_directory(resume: str) -> Path:
    """A checkpoint ``step_XXXXXXXX`` lives in its run directory; a run directory is itself."""
    path = Path(resume)
    return path.parent if (path / "manifest.json").is_file() else path


def run_sample(args: argparse.Namespace) -> None:
    """The ``sample`` command: rebuild model and tokenizer from the checkpoint, then generate."""
    import torch

    from .runtime import get_device
    from .train.checkpoint import load_checkpoint
    from .train.launch import tokenizer_from_state
    from .train.run_config import check_device

    if args.max_new_tokens < 1 or args.num_samples < 1:
        raise ValueError("--max-new-tokens and --num-samples must be at least 1")
    check_device(args.device, "--device")
    checkpoint = load_checkpoint(args.checkpoint)
    device = get_device(args.device)
    model = checkpoint.build_model(device)
    tokenizer = tokenizer_from_state(checkpoint.extra["metadata"]["tokenizer"])
    prompt_ids = tokenizer.encode(args.prompt)
    if not prompt_ids:
        raise ValueError("--prompt must hold at least one character")
    generator = torch.Generator(device=device).manual_seed(args.seed)
    for index in range(args.num_samples):
        ids = continue_ids(model, prompt_ids, args.max_new_tokens, temperature=args.temperature,
                           top_k=args.top_k, generator=generator)
        if index:
            print("-" * 40)
        print(tokenizer.decode(ids))


def continue_ids(model: nn.Module, prompt_ids: list[int], max_new_tokens: int, **sampling: Any) -> list[int]:
    """``prompt_ids`` and ``max_new_tokens`` sampled tokens, past the model's context if asked.

    :func:`llm_tutorial.generate.generate` never goes beyond the context length ``C`` (the model
    has no positions there). For longer text this generates in rounds: each round prompts with
    the last ``C // 2`` tokens so far and adds up to ``C - C // 2`` new ones, so the model always
    sees at least half a context of history."""
    from .generate import generate

    context = model.config.context_length
    window = max(1, context // 2)
    ids = list(prompt_ids)
    remaining = max_new_tokens
    while remaining:
        prompt = ids if len(ids) + remaining <= context else ids[-window:]
        steps = min(remaining, context - len(prompt))
        ids += generate(model, prompt, steps, **sampling)[len(prompt):].tolist()
        remaining -= steps
    return ids


def run_doctor(args: argparse.Namespace) -> None:
    """The ``doctor`` command: print the report; exit 1 when something a chapter needs is missing."""
    from .doctor import diagnose

    report = diagnose(offline=args.offline)
    print(report)
    if not report.ok:
        raise SystemExit(1)


def run_data(args: argparse.Namespace) -> None:
    """The ``data prepare`` command."""
    from .data.corpora import CORPORA, DATA_ENV, cache_dir
    from .data.prepare import missing_help, prepare_folder

    prepared = prepare_folder(args.folder, args.out)
    for name in prepared.written:
        print(f"ok       {CORPORA[name].filename:<22} from {prepared.sources[name].name}  (SHA-256 checked)")
    for path in prepared.ignored:
        print(f"ignored  {path.name} (not one of the book's files)")
    if prepared.missing:
        print("still missing (download these, then run this command again):")
        print(missing_help(prepared.missing))
    where = Path(args.out).expanduser() if args.out else cache_dir()
    print(f"written to {where}")
    if args.out:
        print(f"tell the package where they are: export {DATA_ENV}={where.resolve()}")


class CommandLineError(SystemExit):
    """A mistake reported as one line on stderr; the process exits with code 2 (``str`` is the line)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors a user's input can cause: bad values and files, missing data, a locked or
    unwritable folder, a diverged run, an unreadable checkpoint, bad YAML."""
    from .data.corpora import ChecksumError, DataUnavailableError
    from .train.lock import RunLockedError
    from .train.trainer import NonFiniteLossError

    return (ValueError, TypeError, KeyError, OSError, yaml.YAMLError, NonFiniteLossError, DataUnavailableError,
            ChecksumError, RunLockedError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (a KeyError's message without its quotes)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(text).split()) or type(error).__name__


COMMANDS = {"train": run_train, "sample": run_sample, "doctor": run_doctor, "data": run_data}


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: the process's arguments) and run the command.

    Every error a user can cause ends as one line on stderr, ``<command>: error: ...``, and exit
    code 2 (:class:`CommandLineError`); with ``--debug`` the exception propagates with its traceback.
    An unexpected error (a bug) also ends as one line, asking for ``--debug`` and a report."""
    args = build_parser().parse_args(argv)
    shown = warnings.showwarning
    if not args.debug:
        warnings.showwarning = _one_line_warning
    try:
        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{args.command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:
        if args.debug:
            raise
        if isinstance(error, user_errors()):
            message = f"{args.command}: error: {one_line(error)}"
        else:
            message = (f"{args.command}: unexpected {type(error).__name__}: {one_line(error)} (run again with "
                       "--debug for the traceback, and please report it)")
        print(message, file=sys.stderr)
        raise CommandLineError(message) from None
    finally:
        warnings.showwarning = shown


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr if file is None else file)


if __name__ == "__main__":
    main(sys.argv[1:])
