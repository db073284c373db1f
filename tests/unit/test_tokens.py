"""Token counters: the default regex count, and a tokenizer.json through ``tokenizers``."""

import random

import pytest

from zipfit_beam.score.tokens import _PRETOKEN, TokenCounter, count_regex, load_counter


@pytest.mark.parametrize("text, pieces", [
    ("def add(a, b):\n    return a + b\n",
     ["def", " add", "(", "a", ",", " b", "):", "\n   ", " return", " a", " +", " b", "\n"]),
    ("It's 2024-11-28, 12345 items", ["It", "'s", " 202", "4", "-", "11", "-", "28", ",", " 123", "45", " items"]),
    ("snake_case_name", ["snake", "_", "case", "_", "name"]),
    ("naïve café", ["naïve", " café"]),
])
def test_regex_pieces_are_gpt2_style(text, pieces):
    assert _PRETOKEN.findall(text) == pieces
    assert count_regex(text) == len(pieces)


def test_every_character_is_counted_in_some_piece():
    rng = random.Random(3)
    alphabet = "ab Z09_.,;:'\"\n\t  é中文😀\u0301²-+*/\\"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        assert "".join(_PRETOKEN.findall(text)) == text


def test_a_document_counts_at_least_one_token():
    assert count_regex("") == 1 and TokenCounter().count(["x", ""]) == [1, 1]


def make_tokenizer_json(path, corpus):
    """A small word-level tokenizer.json built here (no download): one token per word or
    punctuation mark, [UNK] for anything else."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers
    tok = tokenizers.Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    tok.save(str(path))
    return tok


def test_tokenizer_json_counts_like_the_tokenizer(tmp_path, sources):
    texts = [s["text"] for s in sources]
    tok = make_tokenizer_json(tmp_path / "tokenizer.json", texts[:20])
    counter = load_counter(str(tmp_path / "tokenizer.json"))
    assert counter.count(texts) == [max(1, len(tok.encode(t).ids)) for t in texts]
    assert counter.count(texts) != TokenCounter().count(texts)
    assert counter.name.startswith("tokenizer.json:")


def test_a_bad_tokenizer_file_is_a_clear_error(tmp_path):
    pytest.importorskip("tokenizers")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable tokenizer.json"):
        load_counter(str(bad))
    with pytest.raises(ValueError, match="not a readable tokenizer.json"):
        load_counter(str(tmp_path / "missing.json"))
