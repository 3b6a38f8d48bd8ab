"""Label rules and greedy CTC decoding, as PaddleOCR's CTCLabelEncode / CTCLabelDecode, with the word confidence
by each rule."""
import typing

import numpy as np
import pytest

from rosetta.config import CharsetConfig
from rosetta.errors import RosettaError
from rosetta_infer.charset import Charset, CharsetError, DEFAULT_ALPHABET
from rosetta_infer.postprocess import CTCLabelDecode
from rosetta_infer.postprocess.rec_postprocess import CONFIDENCE_RULES
from rosetta_infer.settings import ConfidenceRule


def onehot(indices, num_classes=37, p=0.9):
    probs = np.full((len(indices), num_classes), (1 - p) / (num_classes - 1), dtype=np.float32)
    for t, i in enumerate(indices):
        probs[t, i] = p
    return probs


def test_default_alphabet():
    cs = Charset.from_config(CharsetConfig())
    assert cs.characters == DEFAULT_ALPHABET and cs.num_classes == 37


def test_encode_lowercases_and_drops_out_of_charset():
    cs = Charset()
    assert cs.normalize("Hello, World!") == "helloworld"
    assert cs.encode("ab1") == [11, 12, 2]


def test_length_is_checked_before_filtering():
    cs = Charset(max_text_length=5)
    assert cs.normalize("a.b.c") == "abc"
    # 6 raw characters: rejected even though only 3 survive the filter.
    assert cs.normalize("a.b.c.") is None
    assert cs.normalize("") is None
    assert cs.normalize("x" * 25 + "y") is None or cs.max_text_length != 25


def test_over_long_default_label():
    cs = Charset()
    assert cs.normalize("a" * 25) == "a" * 25
    assert cs.normalize("a" * 26) is None


def test_empty_after_filtering_is_rejected():
    assert Charset().encode("!!!") is None
    assert Charset().encode("日本") is None


def test_custom_dictionary_with_space_keeps_case(tmp_path):
    d = tmp_path / "dict.txt"
    d.write_text("a\nB\nc\n")
    cs = Charset.from_config(CharsetConfig(dict_path=str(d), use_space=True))
    assert cs.characters == "aBc "
    assert cs.normalize("aB c") == "aB c"
    assert cs.normalize("ab c") == "a c"  # no lowercasing for a dictionary file; 'b' is not in it
    assert cs.encode("c a") == [3, 4, 1]
    text, conf = CTCLabelDecode(cs)(onehot([1, 0, 4, 0, 2], num_classes=5))[0]
    assert text == "a B"


def test_dictionary_errors(tmp_path):
    with pytest.raises(CharsetError, match="not found"):
        Charset.from_dict_file(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("a\nab\n")
    with pytest.raises(CharsetError, match="more than one character"):
        Charset.from_dict_file(bad)
    dup = tmp_path / "dup.txt"
    dup.write_text("a\nb\na\n")
    with pytest.raises(CharsetError, match="appears twice"):
        Charset.from_dict_file(dup)


def test_decode_merges_repeats_and_drops_blanks():
    cs = Charset()
    # h h blank e l l blank l o  -> "hello" (blank separates the double l)
    h, e, l, o = (cs.encode(c)[0] for c in "helo")
    text, conf = CTCLabelDecode(cs)(onehot([h, h, 0, e, l, l, 0, l, o]))[0]
    assert text == "hello"
    assert conf == pytest.approx(0.9)


def test_decode_confidence_is_mean_of_kept_steps():
    cs = Charset()
    probs = onehot([11, 11, 0, 12])
    probs[0, 11], probs[1, 11], probs[3, 12] = 0.5, 0.99, 0.7
    text, conf = CTCLabelDecode(cs)(probs)[0]
    assert text == "ab"
    # Kept steps are the first of the repeated run (0.5) and the 'b' (0.7).
    assert conf == pytest.approx(0.6)


@pytest.mark.parametrize("rule, expected", [("mean", (0.5 + 0.9 + 0.7) / 3), ("min", 0.5),
                                             ("geometric", (0.5 * 0.9 * 0.7) ** (1 / 3))])
def test_decode_confidence_by_rule(rule, expected):
    cs = Charset()
    probs = onehot([11, 11, 0, 12, 0, 13])
    probs[0, 11], probs[1, 11], probs[3, 12], probs[5, 13] = 0.5, 0.99, 0.9, 0.7
    [(text, conf)] = CTCLabelDecode(cs, rule)(probs)
    assert text == "abc" and conf == pytest.approx(expected)


def test_one_doubtful_character_shows_in_min_and_geometric_not_in_mean():
    """OnnxTR #95: a long word with one guessed character keeps a high mean."""
    cs = Charset()
    probs = onehot(cs.encode("benchmarking"), p=0.99)
    probs[4, cs.encode("h")[0]] = 0.2
    mean, low, geometric = (CTCLabelDecode(cs, rule)(probs)[0][1] for rule in ("mean", "min", "geometric"))
    assert mean > 0.9 and low == pytest.approx(0.2) and geometric < 0.88


def test_decode_geometric_survives_long_words():
    cs = Charset(max_text_length=200)
    probs = onehot([11, 12] * 100, p=0.5)  # 0.5 ** 200 underflows float32: the product is taken through logs
    assert CTCLabelDecode(cs, "geometric")(probs)[0][1] == pytest.approx(0.5)


def test_an_unknown_rule_is_one_sentence():
    assert set(CONFIDENCE_RULES) == set(typing.get_args(ConfidenceRule))  # the schema names the rules there are
    with pytest.raises(RosettaError, match="confidence rule 'median' is unknown; use one of mean, min, geometric"):
        CTCLabelDecode(Charset(), "median")


def test_decode_all_blank():
    for rule in ("mean", "min", "geometric"):
        assert CTCLabelDecode(Charset(), rule)(onehot([0] * 25)) == [("", 0.0)]


def test_decode_batch():
    cs = Charset()
    batch = np.stack([onehot([11, 0, 12]), onehot([0, 0, 2])])
    assert [t for t, _ in CTCLabelDecode(cs)(batch)] == ["ab", "1"]


def test_lookup_is_built_once_not_per_label():
    cs = Charset()
    assert cs.encode("ab") == [11, 12] and cs._index is cs._index  # a field filled in __init__, not a property
    assert "_index" not in repr(cs) and Charset() == cs  # and no part of what makes two charsets equal


def test_charset_round_trips_through_dict():
    cs = Charset("xyz", 10, lowercase=False)
    assert Charset.from_dict(cs.to_dict()) == cs
