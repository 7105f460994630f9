import json

import pytest

from lit_lm.config import BertConfig


@pytest.mark.parametrize(
    "name,layers,hidden", [("tiny", 2, 128), ("mini", 4, 256), ("small", 4, 512), ("medium", 8, 512), ("base", 12, 768), ("large", 24, 1024)]
)
def test_named_sizes(name, layers, hidden):
    c = BertConfig.from_name(name)
    assert (c.n_layer, c.n_embd, c.n_head, c.intermediate_size) == (layers, hidden, hidden // 64, 4 * hidden)


def test_base_defaults_are_the_original_recipe():
    c = BertConfig.from_name("base")
    assert (c.vocab_size, c.max_position_embeddings, c.type_vocab_size) == (30522, 512, 2)
    assert (c.hidden_dropout, c.attention_dropout, c.initializer_range, c.layer_norm_eps) == (0.1, 0.1, 0.02, 1e-12)


def test_overrides_and_errors():
    assert BertConfig.from_name("mini", vocab_size=1000).vocab_size == 1000
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        BertConfig.from_name("huge")
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(n_embd=100, n_head=3)


def test_padded_vocab():
    assert BertConfig(vocab_size=30522, pad_vocab_multiple=64).padded_vocab_size == 30528
    assert BertConfig(vocab_size=30522).padded_vocab_size == 30522


def test_hf_json_round_trip(tmp_path):
    c = BertConfig.from_name("mini", vocab_size=777, hidden_dropout=0.0)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(c.to_hf_dict()))
    assert BertConfig.from_hf_json(path) == c
    assert BertConfig.resolve(str(tmp_path)) == c  # a directory holding config.json
    assert BertConfig.resolve("tiny") == BertConfig.from_name("tiny")


def test_hf_json_matches_transformers(tmp_path):
    from conftest import require_transformers

    transformers = require_transformers()
    hf = transformers.BertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=99)
    hf.save_pretrained(tmp_path)
    c = BertConfig.from_hf_json(tmp_path / "config.json")
    assert (c.vocab_size, c.n_embd, c.n_layer, c.n_head, c.intermediate_size) == (500, 64, 3, 4, 99)
    assert transformers.BertConfig(**c.to_hf_dict()).hidden_size == 64


def test_bad_hf_json(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        BertConfig.from_hf_json(bad)
    bad.write_text(json.dumps({"hidden_size": 64}))
    with pytest.raises(ValueError, match="missing keys"):
        BertConfig.from_hf_json(bad)
    with pytest.raises(ValueError, match="not a size"):
        BertConfig.resolve(str(tmp_path / "nope.json"))
