"""One training run with sentence-transformers' ``SentenceTransformerTrainer`` (v3+ API).

The loss is chosen by name (``mnrl``, ``cached-mnrl``, ``cosine``); the model's prompts are
given to the trainer per column, so the texts it trains on are the texts kosearch encodes
(``query: `` + question, ``passage: `` + passage for the e5 family). Progress goes to stderr
through one tqdm bar (steps, loss, ETA); the trainer's own printer, which writes to stdout, is
removed, and so is the model-card callback (no card is written). Nothing is saved here: the
caller saves the model where it wants it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kosearch.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

LOSSES = ("mnrl", "cached-mnrl", "cosine")
#: Texts per forward pass of ``cached-mnrl``. MNRL holds the activations of the whole batch:
#: a batch of 16 KorQuAD questions with 512-token passages (positive + 1 negative) reached
#: 10 GB resident with me5-small on a CPU before the machine ran out of memory and killed it.
#: cached-mnrl computes the same loss and gradients with the memory of 8 texts at a time, at
#: the cost of one extra forward pass without gradients.
_CACHED_MINI_BATCH = 8


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """How to train (the values ``finetune.json`` records).

    Attributes:
        loss: ``mnrl`` (in-batch and hard negatives), ``cached-mnrl`` (the same with gradient
            caching, for large batches in little memory) or ``cosine`` (STS scores).
        epochs: Passes over the training examples (``max_steps`` wins when set).
        batch_size: Examples per step; with MNRL, the in-batch negatives of each question.
        lr: Peak learning rate (linear warm-up over the first 10% of steps, then decay).
        max_steps: Stop after this many steps (None: ``epochs`` decide).
        seed: Seeds the shuffling and the trainer.
        warmup_ratio: Share of the steps spent warming up.
        scale: MNRL's similarity scale (the inverse softmax temperature); None keeps
            sentence-transformers' default (20). :func:`kosearch.finetune` fits it to the
            base model unless it is given.
    """

    loss: str = "cached-mnrl"
    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 2e-5
    max_steps: int | None = None
    seed: int = 42
    warmup_ratio: float = 0.1
    scale: float | None = None


@dataclass
class TrainReport:
    """What a run did: steps, time, and the logged training loss."""

    steps: int = 0
    seconds: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def check_settings(settings: TrainSettings) -> None:
    """Refuse settings no run can use, before any model loads."""
    if settings.loss not in LOSSES:
        raise ConfigError(f"unknown loss {settings.loss!r}; use one of {', '.join(LOSSES)}")
    if settings.batch_size < 1:
        raise ConfigError(f"the batch size must be at least 1, got {settings.batch_size}")
    if settings.epochs <= 0:
        raise ConfigError(f"epochs must be positive, got {settings.epochs}")
    if not settings.lr > 0:
        raise ConfigError(f"the learning rate must be positive, got {settings.lr}")
    if settings.scale is not None and not settings.scale > 0:
        raise ConfigError(f"the scale must be positive, got {settings.scale}")
    if settings.loss == "cosine" and settings.scale is not None:
        raise ConfigError("a scale applies to the mnrl losses, not to the cosine loss")
    if settings.max_steps is not None and settings.max_steps < 1:
        raise ConfigError(f"max steps must be at least 1, got {settings.max_steps}")


def train(
    model: SentenceTransformer,
    columns: dict[str, list[Any]],
    prompts: dict[str, str],
    settings: TrainSettings,
    *,
    device: str,
    progress: bool = False,
) -> TrainReport:
    """Train ``model`` in place on ``columns`` (a ``datasets.Dataset``'s columns).

    Args:
        model: The model to train.
        columns: ``anchor, positive[, negative_i]`` (MNRL) or ``sentence1, sentence2, score``
            (cosine, scores in [0, 1]).
        prompts: Column -> prompt prepended to that column's texts.
        settings: The training settings.
        device: ``cpu`` keeps the trainer off any accelerator.
        progress: Draw a progress bar on stderr.
    """
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class _Trainer(SentenceTransformerTrainer):  # type: ignore[misc]
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            """No model card: its callback samples the data with a progress bar of its own."""

    report = TrainReport()
    with tempfile.TemporaryDirectory(prefix="kosearch-train-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps or -1,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.lr,
            warmup_steps=settings.warmup_ratio,  # a float below 1 is a share of the steps
            seed=settings.seed,
            data_seed=settings.seed,
            batch_sampler="no_duplicates" if settings.loss != "cosine" else "batch_sampler",
            prompts={k: v for k, v in prompts.items() if v} or None,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="steps",
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
            use_cpu=device == "cpu",
            dataloader_num_workers=0,
        )
        trainer = _Trainer(
            model=model, args=args, train_dataset=Dataset.from_dict(columns),
            loss=_loss(model, settings), callbacks=[_progress(report, progress)],
        )
        for printer in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(printer)
        start = time.perf_counter()
        trainer.train()
        report.seconds = time.perf_counter() - start
        report.steps = int(trainer.state.global_step)
    return report


def _loss(model: SentenceTransformer, settings: TrainSettings) -> Any:
    from sentence_transformers import losses

    if settings.loss == "cosine":
        return losses.CosineSimilarityLoss(model)
    scale = {} if settings.scale is None else {"scale": settings.scale}
    if settings.loss == "cached-mnrl":
        return losses.CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=min(_CACHED_MINI_BATCH, settings.batch_size), **scale
        )
    return losses.MultipleNegativesRankingLoss(model, **scale)


def _progress(report: TrainReport, show: bool) -> Any:
    """A ``TrainerCallback`` that records the logged loss and draws one tqdm bar on stderr
    (defined here so that importing this module imports no ML library)."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # type: ignore[misc]
        bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar = tqdm(total=state.max_steps, desc="fine-tuning", unit=" steps",
                            file=sys.stderr, disable=not show, dynamic_ncols=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> None:
            if logs and "loss" in logs:
                loss = float(logs["loss"])
                report.losses.append((int(state.global_step), loss))
                if self.bar is not None:
                    self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return Progress()
