"""HateXplain: toxic (hate speech or offensive) vs normal posts, gender and race groups; streamed.

Files (``<data root>/hatexplain/``): ``dataset.json`` and ``post_id_divisions.json`` from
https://github.com/hate-alert/HateXplain/tree/master/Data; their train / val / test division is
used as given. Rules (documented in docs/text.md):

- **Label**: the majority (more than half) of a post's annotators; a post without one is dropped
  and counted in ``notes``. By default the vote is over the three annotated labels, as HateXplain
  does (``vote: labels``), and the winner is then mapped to the task: ``task: toxic`` gives
  normal (0) vs toxic (1) = hatespeech ∪ offensive; ``task: three_class`` gives normal (0),
  offensive (1), hatespeech (2). ``vote: task`` votes on the task's classes instead (a post
  labelled hatespeech, offensive, normal is then toxic rather than dropped).
- **Groups**: a post belongs to a group when a majority of its annotators name that community as
  a target. Attributes ``gender`` (Men, Women) and ``race`` (African, Arab, Asian, Caucasian,
  Hispanic) by default (``sensitive:`` maps attribute -> communities). A post naming no group of
  an attribute, or for which a majority names *several* groups of it (e.g. both Men and Women),
  gets code -1: it is left out of that attribute's fairness metrics. Both counts are in ``notes``.
- **Tokens**: a post is its ``post_tokens`` joined by spaces, tokenised by ``tokenizer`` (default
  ``bert-base-uncased``: BERT-base and DistilBERT uncased share this WordPiece vocabulary; it must
  be the vocabulary of the teacher *and* the student), truncated to ``max_length`` (128) tokens.
  Hub downloads only with ``dataset.download: true`` (never while ``HF_HUB_OFFLINE`` is set).
- **Similarity space** for individual fairness (``SplitData.test_features``): TF-IDF of word
  uni- and bigrams (sublinear tf, fitted on the training posts), reduced to ``features_dim``
  (100) dimensions by TruncatedSVD (latent semantic analysis, seeded), rows scaled to unit
  length, so Euclidean distance is a monotone function of cosine similarity between posts.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kdfair.config import DatasetConfig
from kdfair.data.base import Part, SplitData
from kdfair.data.catalog import Requirement, ensure_present, fingerprint, loader_options
from kdfair.errors import ConfigError, DatasetError
from kdfair.integrity import sha256_file

# what this module's data sets need on disk (``kdfair datasets``, missing-data errors)
DATASETS: dict[str, Requirement] = {
    "hatexplain": Requirement(
        "hatexplain", "files", "hatexplain", ("dataset.json", "post_id_divisions.json"),
        "https://github.com/hate-alert/HateXplain", how="copy Data/dataset.json and "
        "Data/post_id_divisions.json from that repository",
    ),
}

PUBLISHED = "https://github.com/hate-alert/HateXplain/tree/master/Data"
LABELS = ("hatespeech", "offensive", "normal")
CLASS_NAMES = {"toxic": ["normal", "toxic"], "three_class": ["normal", "offensive", "hatespeech"]}
TO_CLASS = {
    "toxic": {"normal": 0, "offensive": 1, "hatespeech": 1},
    "three_class": {"normal": 0, "offensive": 1, "hatespeech": 2},
}
SENSITIVE = {
    "gender": ("Men", "Women"),
    "race": ("African", "Arab", "Asian", "Caucasian", "Hispanic"),
}
SPLITS = ("train", "val", "test")
LOADER_VERSION = 1


class HateXplainOptions(BaseModel):
    """HateXplain loader options (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["toxic", "three_class"] = "toxic"
    vote: Literal["labels", "task"] = "labels"
    sensitive: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(SENSITIVE))
    tokenizer: str = "bert-base-uncased"
    max_length: int = Field(128, ge=8, le=512, description="BERT's position limit is 512")
    features_dim: int = Field(100, ge=1, description="TruncatedSVD dimensions of the TF-IDF")

    @field_validator("sensitive")
    @classmethod
    def _groups(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for attr, groups in v.items():
            if attr == "index" or not attr.isidentifier():
                raise ValueError(f"{attr!r}: attribute names are identifiers other than 'index'")
            if len(groups) < 2 or len(set(g.lower() for g in groups)) != len(groups):
                raise ValueError(f"{attr}: give at least two distinct communities; got "
                                 f"{list(groups)}")
        return v


# --- reading and labelling -----------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); get the file again from "
                           f"{PUBLISHED}") from None


def majority(votes: list[str]) -> str | None:
    """The value named by more than half of ``votes``, else None."""
    if not votes:
        return None
    value, count = Counter(votes).most_common(1)[0]
    return value if 2 * count > len(votes) else None


def post_label(annotators: list[dict[str, Any]], task: str, vote: str) -> int | None:
    """Class of a post from its annotators' labels, or None when there is no majority."""
    labels = [a["label"] for a in annotators]
    if vote == "labels":
        won = majority(labels)
        return None if won is None else TO_CLASS[task][won]
    won_class = majority([str(TO_CLASS[task][lab]) for lab in labels])
    return None if won_class is None else int(won_class)


def post_groups(annotators: list[dict[str, Any]], groups: tuple[str, ...]) -> list[int]:
    """Indices of the ``groups`` that a majority of the annotators name as a target."""
    n = len(annotators)
    named = Counter()
    for a in annotators:
        targets = a.get("target") or []
        if isinstance(targets, str):
            targets = [targets]
        named.update({str(t).strip().lower() for t in targets})
    return [i for i, g in enumerate(groups) if 2 * named[g.lower()] > n]


def _check_post(pid: str, post: Any, path: Path) -> None:
    ok = (isinstance(post, dict) and isinstance(post.get("post_tokens"), list)
          and isinstance(post.get("annotators"), list) and post["annotators"]
          and all(isinstance(a, dict) and "label" in a for a in post["annotators"]))
    if not ok:
        raise DatasetError(f"{path}: post {pid!r} lacks `post_tokens` or `annotators` (each with "
                           f"a `label`); is this HateXplain's dataset.json? ({PUBLISHED})")
    bad = {a["label"] for a in post["annotators"]} - set(LABELS)
    if bad:
        raise DatasetError(f"{path}: post {pid!r} has label(s) {sorted(bad)}; expected "
                           f"{', '.join(LABELS)}")


def _divisions(path: Path, posts: dict[str, Any]) -> dict[str, list[str]]:
    div = _read_json(path)
    if not isinstance(div, dict) or any(not isinstance(div.get(s), list) for s in SPLITS):
        raise DatasetError(f"{path}: expected {{\"train\": [ids], \"val\": [ids], \"test\": "
                           f"[ids]}} (HateXplain's post_id_divisions.json, {PUBLISHED})")
    seen: dict[str, str] = {}
    for s in SPLITS:
        for pid in div[s]:
            if pid in seen:
                raise DatasetError(f"{path}: post {pid!r} is in both {seen[pid]} and {s}")
            seen[pid] = s
    unknown = [pid for pid in seen if pid not in posts]
    if unknown:
        raise DatasetError(f"{path} names {len(unknown)} post(s) that dataset.json lacks (e.g. "
                           f"{unknown[0]!r}); use the two files of the same HateXplain release")
    return {s: [str(p) for p in div[s]] for s in SPLITS}


# --- tokenised posts ---------------------------------------------------------------------------


class TokenizedPosts(torch.utils.data.Dataset):
    """Pre-tokenised posts: item i = ({input_ids, attention_mask} 1-D int64, label).

    The token ids of all posts are one flat int32 array with offsets (cheap to hand to DataLoader
    workers); ``collate`` pads a batch to its longest post (dynamic padding).
    """

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray, pad_id: int):
        self.ids, self.offsets = ids, offsets
        self.labels, self.pad_id = labels, int(pad_id)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], int]:
        ids = torch.from_numpy(self.ids[self.offsets[i] : self.offsets[i + 1]].astype(np.int64))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, int(self.labels[i])

    def collate(self, batch: list[tuple[dict[str, torch.Tensor], int]]
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Pad to the longest post of the batch: ([B, L] input_ids and attention_mask, [B])."""
        length = max(len(x["input_ids"]) for x, _ in batch)
        ids = torch.full((len(batch), length), self.pad_id, dtype=torch.int64)
        mask = torch.zeros((len(batch), length), dtype=torch.int64)
        for r, (x, _) in enumerate(batch):
            n = len(x["input_ids"])
            ids[r, :n] = x["input_ids"]
            mask[r, :n] = 1
        return ({"input_ids": ids, "attention_mask": mask},
                torch.tensor([y for _, y in batch], dtype=torch.int64))


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat int32 token ids, int64 offsets [N + 1]) of ``texts``, special tokens included."""
    ids: list[list[int]] = []
    for i in range(0, len(texts), 1024):
        ids += tokenizer(texts[i : i + 1024], truncation=True, max_length=max_length,
                         add_special_tokens=True)["input_ids"]
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in ids])
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def similarity_features(train_texts: list[str], test_texts: list[str], dim: int) -> np.ndarray:
    """Test posts in the similarity space: unit-length LSA (TF-IDF -> TruncatedSVD) vectors.

    TF-IDF of word uni- and bigrams with sublinear tf, vocabulary and idf from the training
    posts (terms in at least 2 posts); TruncatedSVD to ``dim`` dimensions (fewer when the
    vocabulary is smaller), seeded; rows L2-normalised (a post with no known term stays 0).
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2 if len(train_texts) > 1 else 1,
                          sublinear_tf=True, dtype=np.float32)
    try:
        tr = vec.fit_transform(train_texts)
    except ValueError:  # no term in two training posts: fall back to every term
        vec.set_params(min_df=1)
        tr = vec.fit_transform(train_texts)
    te = vec.transform(test_texts)
    k = min(dim, tr.shape[1] - 1, tr.shape[0] - 1)
    if k >= 1:
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=0)
        svd.fit(tr)
        out = svd.transform(te)
    else:
        out = te.toarray()
    return normalize(np.asarray(out, dtype=np.float64)).astype(np.float32)


# --- counterfactual posts ------------------------------------------------------------------------

TERMS_FILE = "identity_terms.yaml"


def identity_terms() -> dict[str, dict[str, list[str]]]:
    """attribute -> community -> its identity terms (lower case), from ``identity_terms.yaml``
    (package data, read with ``yaml.safe_load``)."""
    from importlib.resources import files

    import yaml

    raw = yaml.safe_load(files("kdfair.data").joinpath(TERMS_FILE).read_text(encoding="utf-8"))
    return {str(a): {str(g): [str(t).lower() for t in terms] for g, terms in groups.items()}
            for a, groups in raw.items()}


def swap_table(terms: dict[str, list[str]], groups: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """term -> (its replacement, its group's index) for one attribute: every term of group g
    becomes the term at the same position of group g + 1 (cyclically; two groups: a swap).
    Raises ValueError when a group has no list or the lists differ in length."""
    by_name = {k.lower(): v for k, v in terms.items()}
    lists = []
    for g in groups:
        if g.lower() not in by_name:
            raise ValueError(f"no identity terms for community {g!r}")
        lists.append(by_name[g.lower()])
    if len({len(x) for x in lists}) != 1:
        raise ValueError("the communities' term lists differ in length: "
                         + ", ".join(f"{g} {len(x)}" for g, x in zip(groups, lists, strict=True)))
    table: dict[str, tuple[str, int]] = {}
    for gi, words in enumerate(lists):
        nxt = lists[(gi + 1) % len(lists)]
        for j, w in enumerate(words):
            table.setdefault(w, (nxt[j], gi))  # a term listed twice maps as its first place
    return table


def counterfactual_tokens(tokens: list[str], table: dict[str, tuple[str, int]],
                          n_groups: int) -> tuple[list[str], int]:
    """A post's tokens with every identity term of the attribute swapped (see
    :func:`swap_table`), and the group its first term was moved to; (tokens, -1) when the post
    has no such term."""
    out, target = [], -1
    for t in tokens:
        hit = table.get(t.lower())
        if hit is None:
            out.append(t)
            continue
        out.append(hit[0])
        if target < 0:
            target = (hit[1] + 1) % n_groups
    return out, target


def counterfactual_parts(test_tokens: list[list[str]], y: np.ndarray,
                         sensitive: dict[str, tuple[str, ...]], tokenizer: Any,
                         max_length: int, pad_id: int) -> tuple[dict[str, Part], dict[str, str]]:
    """attribute -> the test posts with that attribute's identity terms swapped (a Part whose
    ``attributes[attr]`` is the group moved to, -1 for a post without such a term), and a note
    per attribute; attributes without word lists are named in the notes and left out."""
    terms = identity_terms()
    parts, notes = {}, {}
    for attr, groups in sensitive.items():
        try:
            table = swap_table(terms.get(attr, {}), groups)
        except ValueError as err:
            notes[attr] = f"no counterfactual posts for '{attr}': {err} in {TERMS_FILE}"
            continue
        posts, targets = zip(*(counterfactual_tokens(t, table, len(groups))
                               for t in test_tokens), strict=True)
        targets_arr = np.asarray(targets, dtype=np.int64)
        ids, offsets = tokenize(tokenizer, [" ".join(p) for p in posts], max_length)
        parts[attr] = Part(y=torch.from_numpy(y), attributes={attr: targets_arr},
                           dataset=TokenizedPosts(ids, offsets, y, pad_id))
        cycle = " ↔ ".join(groups) if len(groups) == 2 else " → ".join([*groups, groups[0]])
        notes[attr] = (f"every identity term of a group swapped for the same-position term of "
                       f"the next group ({cycle}; word lists: kdfair/data/{TERMS_FILE}, "
                       f"Garg et al. 2019); {int((targets_arr >= 0).sum())} of "
                       f"{len(targets_arr)} test posts contain such a term")
    return parts, notes


# --- the loader ----------------------------------------------------------------------------------


def _group_note(attr: str, names: tuple[str, ...], codes: np.ndarray, several: int) -> str:
    counts = ", ".join(f"{g} {int((codes == i).sum())}" for i, g in enumerate(names))
    none = int((codes == -1).sum()) - several
    return (f"{attr} (test): {counts}; left out of {attr}'s fairness metrics: {none} post(s) "
            f"naming no {attr} group and {several} for which a majority names several "
            f"({' and '.join(names) if len(names) == 2 else 'more than one'}).")


def load(cfg: DatasetConfig, cache_dir: Path) -> SplitData:
    """Read HateXplain, label and group its posts, tokenise them and build the similarity space."""
    opts = loader_options(HateXplainOptions, cfg)
    from kdfair.models.text import load_tokenizer  # needs kdfair[text]; clear error otherwise

    try:
        d = ensure_present(DATASETS["hatexplain"], cfg)
    except DatasetError as err:
        msg = err.template  # unworded: the caller names the setting
        if PUBLISHED not in msg:
            msg += f"\nthe files are published at {PUBLISHED}."
        raise DatasetError(msg, setting=err.setting) from None
    posts = _read_json(d / "dataset.json")
    if not isinstance(posts, dict):
        raise DatasetError(f"{d / 'dataset.json'}: expected one object keyed by post id "
                           f"(HateXplain's dataset.json, {PUBLISHED})")
    division = _divisions(d / "post_id_divisions.json", posts)
    tokenizer = load_tokenizer(opts.tokenizer, cfg.download)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ConfigError(f"dataset.tokenizer: {opts.tokenizer!r} has no padding token")

    class_names = CLASS_NAMES[opts.task]
    notes: list[str] = []
    dropped: dict[str, str] = {}
    parts: dict[str, Part] = {}
    texts: dict[str, list[str]] = {}
    test_tokens: list[list[str]] = []
    several: dict[str, int] = {}
    content: list[Any] = []
    for split in SPLITS:
        keep_text, labels = [], []
        codes: dict[str, list[int]] = {a: [] for a in opts.sensitive}
        n_drop = 0
        for pid in division[split]:
            post = posts[pid]
            _check_post(pid, post, d / "dataset.json")
            y = post_label(post["annotators"], opts.task, opts.vote)
            if y is None:
                n_drop += 1
                continue
            keep_text.append(" ".join(str(t) for t in post["post_tokens"]))
            if split == "test":
                test_tokens.append([str(t) for t in post["post_tokens"]])
            labels.append(y)
            for attr, groups in opts.sensitive.items():
                hit = post_groups(post["annotators"], groups)
                codes[attr].append(hit[0] if len(hit) == 1 else -1)
                if split == "test" and len(hit) > 1:
                    several[attr] = several.get(attr, 0) + 1
        if not labels:
            raise DatasetError(f"HateXplain {split} split has no post with a majority label "
                               f"({len(division[split])} listed in post_id_divisions.json)")
        dropped[split] = f"{split} {n_drop} of {len(division[split])}"
        y_arr = np.asarray(labels, dtype=np.int64)
        ids, offsets = tokenize(tokenizer, keep_text, opts.max_length)
        attrs = {a: np.asarray(c, dtype=np.int64) for a, c in codes.items()}
        parts[split] = Part(y=torch.from_numpy(y_arr), attributes=attrs,
                            dataset=TokenizedPosts(ids, offsets, y_arr, pad_id))
        texts[split] = keep_text
        content += [y_arr, ids, offsets, *attrs.values()]

    vote_words = ("the three annotated labels (hatespeech / offensive / normal)"
                  if opts.vote == "labels" else f"the classes {' / '.join(class_names)}")
    notes.append(f"HateXplain labels: majority (> half) of the annotators over {vote_words}; "
                 "posts without a majority are dropped: " + ", ".join(dropped.values()) + ".")
    y_test = parts["test"].y.numpy()
    notes.append("test classes: " + ", ".join(
        f"{c} {int((y_test == i).sum())}" for i, c in enumerate(class_names)) + ".")
    for attr, groups in opts.sensitive.items():
        notes.append(_group_note(attr, groups, parts["test"].attributes[attr],
                                 several.get(attr, 0)))
    features = similarity_features(texts["train"], texts["test"], opts.features_dim)
    notes.append(f"individual fairness: posts compared as unit-length LSA vectors (TF-IDF of "
                 f"word 1-2-grams fitted on train, TruncatedSVD to {features.shape[1]} "
                 "dimensions); d = Euclidean distance there.")
    cf_parts, cf_notes = counterfactual_parts(test_tokens, parts["test"].y.numpy(),
                                              opts.sensitive, tokenizer, opts.max_length, pad_id)
    notes += [n for a, n in cf_notes.items() if a not in cf_parts]
    fp = fingerprint("hatexplain", opts, sha256_file(d / "dataset.json"),
                     sha256_file(d / "post_id_divisions.json"), *content, version=LOADER_VERSION)
    return SplitData(
        name="hatexplain", train=parts["train"], val=parts["val"], test=parts["test"],
        num_classes=len(class_names), class_names=list(class_names), fingerprint=fp,
        attribute_groups={a: list(g) for a, g in opts.sensitive.items()},
        notes=notes, test_features=features, counterfactuals=cf_parts,
        counterfactual_notes={a: n for a, n in cf_notes.items() if a in cf_parts},
    )
