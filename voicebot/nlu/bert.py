"""A small BERT (2 layers, hidden 128) trained from scratch on our labelled replies, with the bert-base-chinese
tokenizer. Its vocabulary is only the tokens seen in training: any other reads as [UNK] (an untrained embedding
would only add noise), which also makes it small and quick to train."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.torchaudio_stub import stub_torchaudio_extensions

stub_torchaudio_extensions()  # transformers imports torchaudio when it is installed (pyannote.audio brings it)
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, PreTrainedTokenizerBase  # noqa: E402

from voicebot.nlu.data import Example, normalize  # noqa: E402

VOCABULARY_FILE = "vocabulary.json"
MAX_TOKENS = 48


@dataclass(frozen=True, slots=True)
class BertSettings:
    """Size and training schedule of the small BERT."""

    layers: int = 2
    hidden: int = 128
    heads: int = 2
    intermediate: int = 512
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    unk_rate: float = 0.1
    """Share of training tokens replaced by [UNK], so the model leans on what it sees around unknown characters."""


class BertModel:
    """A trained small BERT sequence classifier and its tokenizer."""

    def __init__(self, model: BertForSequenceClassification, tokenizer: PreTrainedTokenizerBase,
                 vocabulary: list[int]) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.vocabulary = vocabulary
        """Tokenizer ids in the model's embedding order."""
        self.lookup = torch.full((len(tokenizer),), vocabulary.index(tokenizer.unk_token_id), dtype=torch.long)
        self.lookup[vocabulary] = torch.arange(len(vocabulary))
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    @classmethod
    def train(cls, examples: list[Example], tokenizer_dir: Path, seed: int = 0,
              settings: BertSettings | None = None) -> BertModel:
        """Train from scratch on labelled examples; deterministic for a given seed and thread count."""
        settings = settings or BertSettings()
        deterministic = torch.are_deterministic_algorithms_enabled()
        try:
            return cls._train(examples, tokenizer_dir, seed, settings)
        finally:
            torch.use_deterministic_algorithms(deterministic)

    @classmethod
    def _train(cls, examples: list[Example], tokenizer_dir: Path, seed: int, settings: BertSettings) -> BertModel:
        _seed_everything(seed)
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        labels = sorted({e.intent for e in examples})
        encoded = tokenizer([normalize(e.text) for e in examples], truncation=True, max_length=MAX_TOKENS)["input_ids"]
        special = [tokenizer.pad_token_id, *sorted(set(tokenizer.all_special_ids) - {tokenizer.pad_token_id})]
        vocabulary = special + sorted({i for ids in encoded for i in ids} - set(special))
        config = BertConfig(vocab_size=len(vocabulary), pad_token_id=0, hidden_size=settings.hidden,
                            num_hidden_layers=settings.layers, num_attention_heads=settings.heads,
                            intermediate_size=settings.intermediate, max_position_embeddings=MAX_TOKENS + 16,
                            num_labels=len(labels),
                            id2label=dict(enumerate(labels)), label2id={x: i for i, x in enumerate(labels)})
        model = BertForSequenceClassification(config)
        trained = cls(model, tokenizer, vocabulary)
        compact = [trained.lookup[ids].tolist() for ids in encoded]
        targets = [labels.index(e.intent) for e in examples]
        _fit(model, compact, targets, settings, len(special), random.Random(seed))
        return trained

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """One row of probabilities per text, columns in `self.labels` order."""
        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer([normalize(t) for t in texts[start:start + batch_size]], padding=True,
                                       truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
                ids = self.lookup[batch["input_ids"]]
                logits = self.model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
                rows.append(torch.softmax(logits, dim=-1).numpy())
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)))

    def save(self, folder: Path) -> None:
        """Write the weights (safetensors), config, tokenizer and the model's vocabulary into `folder`."""
        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))
        (folder / VOCABULARY_FILE).write_text(json.dumps(self.vocabulary), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> BertModel:
        """Read a model saved by `save`, offline."""
        model = BertForSequenceClassification.from_pretrained(str(folder), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        vocabulary = json.loads((folder / VOCABULARY_FILE).read_text(encoding="utf-8"))
        return cls(model, tokenizer, vocabulary)

    def parameter_count(self) -> int:
        """How many weights the model has."""
        return sum(p.numel() for p in self.model.parameters())


def _fit(model: BertForSequenceClassification, encoded: list[list[int]], targets: list[int], settings: BertSettings,
         specials: int, rng: random.Random) -> None:
    """AdamW with linear warm-up and decay, [UNK] token dropout, shuffled mini-batches. Ids are compact: [PAD] is 0,
    the special tokens come first (`specials` of them, [UNK] second)."""
    unk = 1
    steps = settings.epochs * math.ceil(len(encoded) / settings.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / (steps - warmup))))
    order = list(range(len(encoded)))
    model.train()
    for _ in range(settings.epochs):
        rng.shuffle(order)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            ids = [[unk if t >= specials and rng.random() < settings.unk_rate else t for t in encoded[i]]
                   for i in batch]
            width = max(len(row) for row in ids)
            input_ids = torch.tensor([row + [0] * (width - len(row)) for row in ids])
            loss = model(input_ids=input_ids, attention_mask=(input_ids != 0).long(),
                         labels=torch.tensor([targets[i] for i in batch])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    model.eval()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
