"""The training batch plan (resumable, shardable, per-source shares and start steps), label padding and seeded
augmentation."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from rosetta.data.loader import BatchPlan, PlanSampler, Stream, collate_rec, RecAug, split_batch
from rosetta.errors import RosettaError


def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_split_batch_shares_add_up():
    assert split_batch(256, [0.5, 0.5]) == [128, 128]
    assert split_batch(64, [1, 2]) == [21, 43]
    assert sum(split_batch(7, [0.3, 0.3, 0.4])) == 7
    assert split_batch(10, [1.0, 0.0]) == [10, 0]


def test_plan_walks_permutations_epoch_by_epoch_and_drops_the_tail():
    plan = BatchPlan([Stream("s", 0, 10, 4)], seed=1, shuffle=True)
    batches = take(PlanSampler(plan, plan.start()), 4)
    indices = [[k[0] for k in b] for b in batches]
    # Epoch 0 gives two batches of 4 from one permutation (2 dropped), then epoch 1 starts over.
    assert len(set(indices[0] + indices[1])) == 8
    assert len(set(indices[2] + indices[3])) == 8
    assert indices[2] + indices[3] != indices[0] + indices[1]  # a new permutation
    assert [k[1][2] for k in batches[1] + batches[2]] == [0] * 4 + [1] * 4  # augmentation seeds carry the epoch
    unshuffled = BatchPlan([Stream("s", 0, 10, 4)], seed=1, shuffle=False)
    assert [k[0] for k in take(PlanSampler(unshuffled, unshuffled.start()), 1)[0]] == [0, 1, 2, 3]


def test_resuming_from_a_position_continues_the_same_order():
    plan = BatchPlan([Stream("a", 0, 13, 3), Stream("b", 13, 7, 2)], seed=5, shuffle=True)
    full = take(PlanSampler(plan, plan.start()), 12)
    position = plan.start()
    for _ in range(5):
        position = plan.advance(position)
    assert take(PlanSampler(plan, position), 7) == full[5:]
    # advance() agrees with next_batch() without building permutations.
    position2 = plan.start()
    for _ in range(5):
        _, position2 = plan.next_batch(position2)
    assert position2 == position


def test_a_head_pass_reads_the_first_samples_then_epoch_0_starts_as_without_it():
    plan = BatchPlan([Stream("a", 0, 20, 4), Stream("b", 20, 10, 2)], seed=7, shuffle=True, head_steps=3)
    batches = take(PlanSampler(plan, plan.start()), 3 + 4)
    head = [sorted(i for i, _ in b) for b in batches[:3]]
    # Three batches over stream a's first 12 and stream b's first 6 samples, each read once.
    assert sorted(i for b in head for i in b if i < 20) == list(range(12))
    assert sorted(i for b in head for i in b if i >= 20) == list(range(20, 26))
    # Then the plan without a head pass, from its start: the same epochs, the same augmentation seeds.
    plain = BatchPlan([Stream("a", 0, 20, 4), Stream("b", 20, 10, 2)], seed=7, shuffle=True)
    assert batches[3:] == take(PlanSampler(plain, plain.start()), 4)
    # The head pass draws its own augmentation seeds, none shared with an epoch's.
    assert not {k[1] for b in batches[:3] for k in b} & {k[1] for b in batches[3:] for k in b}
    # A head larger than the stream is one shuffled pass over all of it.
    whole = BatchPlan([Stream("s", 0, 10, 4)], seed=1, shuffle=True, head_steps=5)
    first = take(PlanSampler(whole, whole.start()), 2)
    assert len({i for b in first for i, _ in b}) == 8 and whole.epoch_size(0, -1) == 10


def test_resuming_inside_the_head_pass_continues_the_same_order():
    plan = BatchPlan([Stream("a", 0, 13, 3), Stream("b", 13, 7, 2)], seed=5, shuffle=True, head_steps=3)
    full = take(PlanSampler(plan, plan.start()), 10)
    for stop in (2, 3, 4):  # inside the head pass, at its end, past it
        position = plan.start()
        for _ in range(stop):
            position = plan.advance(position)
        assert take(PlanSampler(plan, position), 10 - stop) == full[stop:]


def test_mixed_streams_fill_their_share_of_every_batch():
    plan = BatchPlan([Stream("mjsynth", 0, 100, 6), Stream("synthtext", 100, 50, 2)], seed=0, shuffle=True)
    for batch in take(PlanSampler(plan, plan.start()), 30):
        mj = [i for i, _ in batch if i < 100]
        st = [i for i, _ in batch if i >= 100]
        assert len(mj) == 6 and len(st) == 2


def test_ranks_partition_each_global_batch():
    plan = BatchPlan([Stream("s", 0, 40, 8)], seed=3, shuffle=True)
    whole = take(PlanSampler(plan, plan.start()), 6)
    ranks = [take(PlanSampler(plan, plan.start(), rank=r, world_size=2), 6) for r in range(2)]
    for step in range(6):
        got = sorted(ranks[0][step] + ranks[1][step])
        assert got == sorted(whole[step])
        assert not set(ranks[0][step]) & set(ranks[1][step])


def test_a_stream_smaller_than_its_share_is_refused():
    with pytest.raises(RosettaError, match="batch_size"):
        BatchPlan([Stream("tiny", 0, 3, 8)], seed=0, shuffle=True)


def test_collate_pads_labels_to_max_text_length():
    images, targets, lengths = collate_rec([(np.zeros((3, 32, 100), np.float32), [1, 2, 3]),
                                            (np.ones((3, 32, 100), np.float32), [5])], max_text_length=25)
    assert images.shape == (2, 3, 32, 100)
    assert targets.shape == (2, 25) and targets.dtype == torch.long
    assert targets[0, :4].tolist() == [1, 2, 3, 0] and targets[1, :2].tolist() == [5, 0]
    assert lengths.tolist() == [3, 1]


def test_augmentation_is_a_function_of_its_seed():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 90, 3), dtype=np.uint8))
    always, never = RecAug(prob=1.0), RecAug(prob=0.0)
    a = np.asarray(always(img, np.random.default_rng((1, 2, 3))))
    b = np.asarray(always(img, np.random.default_rng((1, 2, 3))))
    c = np.asarray(always(img, np.random.default_rng((1, 2, 4))))
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)
    assert np.array_equal(np.asarray(never(img, np.random.default_rng(0))), np.asarray(img))


def test_a_stream_joins_at_its_start_step_and_the_others_fill_its_places_before():
    plan = BatchPlan([Stream("synth", 0, 100, 6), Stream("real", 100, 30, 2, start_step=4)], seed=0, shuffle=True)
    batches = take(PlanSampler(plan, plan.start()), 10)
    assert [sum(i >= 100 for i, _ in b) for b in batches] == [0] * 4 + [2] * 6
    assert all(len(b) == 8 for b in batches)
    assert plan.joining_note(4).startswith("step 4: real joins") and plan.joining_note(3) is None


def test_a_head_pass_reads_only_the_streams_taking_part_in_it():
    # real joins after the head pass: the head is synth's first 3 x 8 samples, then real starts at epoch 0.
    plan = BatchPlan([Stream("synth", 0, 100, 6), Stream("real", 100, 30, 2, start_step=5)], seed=0, shuffle=True,
                     head_steps=3)
    assert plan.start() == {"synth": [-1, 0], "real": [0, 0]}
    batches = take(PlanSampler(plan, plan.start()), 8)
    assert sorted(i for b in batches[:3] for i, _ in b) == list(range(24))
    assert [sum(i >= 100 for i, _ in b) for b in batches] == [0] * 5 + [2] * 3
    # real joining inside the head pass: its head is what it gives to the head's batches.
    inside = BatchPlan([Stream("synth", 0, 100, 6), Stream("real", 100, 30, 2, start_step=1)], seed=0, shuffle=True,
                       head_steps=3)
    first = take(PlanSampler(inside, inside.start()), 3)
    assert sorted(i for b in first for i, _ in b if i >= 100) == list(range(100, 104))


def test_resuming_a_mixed_run_continues_the_same_batches():
    plan = BatchPlan([Stream("synth", 0, 50, 6), Stream("real", 50, 11, 2, start_step=3)], seed=9, shuffle=True,
                     head_steps=2)
    full = take(PlanSampler(plan, plan.start()), 14)
    for stop in (1, 2, 3, 4, 9):  # inside the head pass, at its end, at the join, after, past real's first epoch
        position = plan.start()
        for step in range(stop):
            position = plan.advance(position, step)
        assert take(PlanSampler(plan, position, step=stop), 14 - stop) == full[stop:]


def test_no_stream_in_the_first_batches_is_refused():
    with pytest.raises(RosettaError, match="source_start_step"):
        BatchPlan([Stream("real", 0, 30, 8, start_step=5)], seed=0, shuffle=True)


def _sources_config(tmp_path, *overrides):
    from rosetta.config import load_config
    from rosetta.params import PROJECT_ROOT

    return load_config(PROJECT_ROOT / "params.yaml", [f"data.root={tmp_path}", "data.mjsynth.url=x",
                                                      "data.synthtext.url=y", "train.batch_size=8", *overrides])


def test_each_source_fills_its_batch_ratio_from_its_start_step(tmp_path):
    from model_fixtures import write_word_lmdb
    from rosetta_infer.charset import Charset
    from rosetta.data.splits import training_sets

    write_word_lmdb(tmp_path / "lmdb" / "mjsynth" / "train", 30)
    write_word_lmdb(tmp_path / "lmdb" / "synthtext" / "train", 20)
    cfg = _sources_config(tmp_path, "data.sources=[mjsynth, synthtext]", "train.batch_ratio={mjsynth: 3, synthtext: 1}",
                          "train.source_start_step.synthtext=7", "train.augment=[synthtext]")
    data = training_sets(cfg, Charset(), world_size=2)
    assert len(data.dataset) == 50
    assert data.streams == [Stream("mjsynth", 0, 30, 12), Stream("synthtext", 30, 20, 4, 7)]
    assert data.augmented == [range(30, 50)]
    single = _sources_config(tmp_path, "data.sources=[synthtext]", "train.augment=true")
    data = training_sets(single, Charset())
    assert data.streams == [Stream("synthtext", 0, 20, 8)] and data.augmented == [range(0, 20)]
    union = _sources_config(tmp_path, "data.sources=[mjsynth, synthtext]", "train.batch_ratio={}",
                            "train.augment=false")
    data = training_sets(union, Charset())
    assert data.streams == [Stream("mjsynth+synthtext", 0, 50, 8)] and data.augmented == []


@pytest.mark.parametrize("override, message", [
    ("train.batch_ratio={synth: 1}", "train.batch_ratio: {'synth': 1.0} gives no share to real of data.sources"),
    ("train.batch_ratio={synth: 0, real: 0}", "train.batch_ratio: {'synth': 0.0, 'real': 0.0} gives no source of"),
    ("train.source_start_step.reel=5", "train.source_start_step key: 'reel' is not one of synth, mjsynth"),
    ("train.augment=[rael]", "train.augment: ['rael'] is not true or false or a list of one of synth"),
])
def test_per_source_settings_name_sources(tmp_path, override, message):
    from rosetta.params import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        _sources_config(tmp_path, override)


def test_without_the_real_sets_training_says_so_and_uses_the_others(tmp_path):
    from model_fixtures import write_word_lmdb
    from rosetta_infer.charset import Charset
    from rosetta.data.splits import training_sets
    from rosetta.layout import DataLayout
    from rosetta.prep.real_train import convert_real_train, write_real_train_manifest

    write_word_lmdb(tmp_path / "lmdb" / "synth" / "train", 30)
    layout = DataLayout(tmp_path)
    write_real_train_manifest(str(tmp_path / "nowhere"), layout.real_train_manifest)
    convert_real_train(layout.real_train_manifest, layout.real_train, Charset(), 0.1, 0, [])
    data = training_sets(_sources_config(tmp_path, f"data.real_train={tmp_path / 'nowhere'}"), Charset())
    assert data.notes == [f"no real training set found at {tmp_path / 'nowhere'} (data.real_train); training on the "
                          "other sources alone"]
    assert data.streams == [Stream("synth", 0, 30, 8)]
