"""Small HateXplain files in the real format, and tiny BERT / DistilBERT models to go with them.

``dataset.json`` is one object keyed by post id, each value with ``post_id``, ``post_tokens``,
``rationales`` and ``annotators`` (``label``, ``annotator_id``, ``target``);
``post_id_divisions.json`` is ``{"train": [...], "val": [...], "test": [...]}`` (FORMATS.md).
The models are randomly initialised, a few thousand parameters, with a WordPiece vocabulary
trained on the fake posts by ``tokenizers`` and saved as a transformers tokenizer beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

TOXIC_WORDS = ["hate", "stupid", "trash", "vermin", "disgusting", "idiots", "scum", "go back"]
NORMAL_WORDS = ["love", "nice", "today", "weather", "friends", "music", "coffee", "game"]
COMMUNITY_WORDS = {"Men": "men", "Women": "women", "African": "africans", "Arab": "arabs",
                   "Asian": "asians", "Caucasian": "whites", "Hispanic": "latinos",
                   "Islam": "muslims", "Jewish": "jews"}
FILLER = ["the", "a", "is", "are", "<user>", "all", "so", "they", "we", "of", "and", "this"]


def annotator(label: str, targets: list[str] | None = None, aid: int = 1) -> dict[str, Any]:
    return {"label": label, "annotator_id": aid, "target": list(targets or ["None"])}


def post(pid: str, tokens: list[str], annotators: list[dict[str, Any]]) -> dict[str, Any]:
    toxic = [a for a in annotators if a["label"] != "normal"]
    rationales = [[int(i % 3 == 0) for i in range(len(tokens))] for _ in toxic]
    return {"post_id": pid, "annotators": annotators, "rationales": rationales,
            "post_tokens": tokens}


def write_hatexplain(root: Path, posts: dict[str, dict[str, Any]],
                     divisions: dict[str, list[str]]) -> Path:
    """Write the two files under ``root/hatexplain`` (the layout the loader expects)."""
    d = Path(root) / "hatexplain"
    d.mkdir(parents=True, exist_ok=True)
    (d / "dataset.json").write_text(json.dumps(posts, indent=2))
    (d / "post_id_divisions.json").write_text(json.dumps(divisions, indent=2))
    return d


def random_posts(n_train: int = 48, n_val: int = 16, n_test: int = 24, seed: int = 0,
                 noise: float = 0.15) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Random posts whose words follow their label (the other label's with probability
    ``noise``) and target; every 7th post has no majority label.

    Each post targets one community (or none); two of three annotators agree on label and
    target, the third differs. Ids look like HateXplain's (``<digits>_twitter`` / ``_gab``).
    """
    rng = np.random.default_rng(seed)
    communities = [None, *COMMUNITY_WORDS]
    posts: dict[str, dict[str, Any]] = {}
    divisions: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    i = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for _ in range(n):
            i += 1
            pid = f"{10**18 + i * 7919}_{'twitter' if i % 2 else 'gab'}"
            toxic = bool(rng.random() < 0.5)
            label = str(rng.choice(["hatespeech", "offensive"])) if toxic else "normal"
            target = communities[int(rng.integers(len(communities)))]
            flip = bool(rng.random() < noise)
            words = list(rng.choice(TOXIC_WORDS if toxic != flip else NORMAL_WORDS, size=3))
            words += list(rng.choice(FILLER, size=int(rng.integers(2, 9))))
            if target is not None:
                words.insert(int(rng.integers(len(words))), COMMUNITY_WORDS[target])
            tokens = " ".join(words).split()
            tg = [target] if target else ["None"]
            if i % 7 == 0:  # no majority label: all three annotators differ
                labels = ["hatespeech", "offensive", "normal"]
            else:
                other = "normal" if toxic else "offensive"
                labels = [label, label, other]
            anns = [annotator(labels[0], tg, 1), annotator(labels[1], tg, 2),
                    annotator(labels[2], ["Other"], 3)]
            posts[pid] = post(pid, tokens, anns)
            divisions[split].append(pid)
    return posts, divisions


def all_texts(posts: dict[str, dict[str, Any]]) -> list[str]:
    return [" ".join(p["post_tokens"]) for p in posts.values()]


def save_tokenizer(texts: list[str], directory: Path, vocab_size: int = 300):
    """Train a BERT-style (uncased WordPiece) tokenizer on ``texts``; save it in ``directory``."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size,
                                                             special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                             cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(str(directory))
    return fast


def build_tiny_models(texts: list[str], where: Path) -> dict[str, Path]:
    """Tiny randomly initialised BERT and DistilBERT base models (no head, like the hub's
    ``bert-base-uncased``) sharing one WordPiece vocabulary, each saved with its tokenizer.

    Returns {"bert": dir, "distilbert": dir}; the tokenizer in either dir serves both.
    """
    import torch
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

    out = {"bert": Path(where) / "tiny-bert", "distilbert": Path(where) / "tiny-distilbert"}
    tok = None
    for d in out.values():
        tok = save_tokenizer(texts, d)
    vocab = len(tok)  # type: ignore[arg-type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        BertModel(BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=32,
                             max_position_embeddings=128)).save_pretrained(str(out["bert"]))
        DistilBertModel(DistilBertConfig(vocab_size=vocab, dim=16, n_layers=1, n_heads=2,
                                         hidden_dim=32, max_position_embeddings=128)
                        ).save_pretrained(str(out["distilbert"]))
    return out
