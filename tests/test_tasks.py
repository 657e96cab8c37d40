"""Task sampling: shapes, labels, one distribution per task, distinct classes and images, seeding,
resumable state, fixed tasks, and the same tasks on every device."""

import numpy as np
import pytest
import torch
from conftest import DEVICES

from gems_core.data import ClassImages, FixedTasks, SplitImages, TaskSampler


def _data(offset: int, classes: int = 6, per_class: int = 5) -> ClassImages:
    """Image j of class c has pixel (0, 0) = offset + c and pixel (0, 1) = j, so a task's source,
    class and image can be read off its pixels."""
    labels = np.repeat(np.arange(classes), per_class)
    images = np.zeros((len(labels), 4, 4, 3), dtype=np.uint8)
    images[:, 0, 0] = (offset + labels)[:, None]
    images[:, 0, 1] = np.tile(np.arange(per_class), classes)[:, None]
    return ClassImages(images, labels, [f"c{i}" for i in range(classes)])


def _split(device="cpu", **kwargs) -> SplitImages:
    return SplitImages([_data(0, **kwargs), _data(100, **kwargs)], torch.device(device), 3)


def _pixels(batch):
    x = torch.cat([batch.support_x, batch.query_x], 1)[:, :, 0, 0] * 255
    return x[..., 0].round().long().cpu(), x[..., 1].round().long().cpu()


@pytest.mark.parametrize("device", DEVICES)
def test_batch_shapes_and_labels(device):
    batch = TaskSampler(_split(device), [0, 1], ways=3, shots=1, queries=2, seed=0, device=device).sample(4)
    assert batch.support_x.shape == (4, 3, 3, 4, 4) and batch.query_x.shape == (4, 6, 3, 4, 4)
    assert batch.support_y[0].tolist() == [0, 1, 2] and batch.query_y[0].tolist() == [0, 0, 1, 1, 2, 2]
    assert batch.support_x.dtype == torch.float32 and float(batch.support_x.max()) <= 1.0
    assert batch.support_x.device.type == torch.device(device).type


@pytest.mark.parametrize("device", DEVICES)
def test_tasks_use_one_distribution_distinct_classes_and_distinct_images(device):
    batch = TaskSampler(_split(device), [0, 1], ways=3, shots=1, queries=2, seed=1, device=device).sample(40)
    source_class, image = _pixels(batch)
    labels = torch.cat([batch.support_y, batch.query_y], 1).cpu()
    for task in range(40):
        source = batch.distribution[task].item()
        assert ((source_class[task] >= 100) == bool(source)).all()
        classes = [source_class[task][labels[task] == y].unique() for y in range(3)]
        assert all(len(c) == 1 for c in classes) and len(set(int(c) for c in classes)) == 3
        for y in range(3):
            assert len(image[task][labels[task] == y].unique()) == 3  # shots + queries distinct images
    assert set(batch.distribution.tolist()) == {0, 1}


def test_tasks_are_drawn_only_from_the_samplers_distributions_and_weights():
    split = _split()
    only_second = TaskSampler(split, [1], 3, 1, 2, seed=0).sample(30)
    assert (only_second.distribution == 1).all() and (_pixels(only_second)[0] >= 100).all()
    skewed = TaskSampler(split, [0, 1], 3, 1, 2, seed=0, weights=[9.0, 1.0]).sample(2000)
    assert 0.87 < float((skewed.distribution == 0).float().mean()) < 0.93


def test_classes_without_enough_images_are_never_sampled():
    labels = np.array([0, 0, 0, 1, 2, 2, 2, 3, 3, 3])
    images = np.broadcast_to(labels[:, None, None, None], (10, 2, 2, 3)).astype(np.uint8).copy()
    split = SplitImages([ClassImages(images, labels, list("abcd"))], torch.device("cpu"), 3)
    assert split.class_names == [["a", "c", "d"]] and split.classes(0) == 3
    batch = TaskSampler(split, [0], 3, 1, 2, seed=0).sample(20)
    assert 1 not in (batch.query_x[:, :, 0, 0, 0] * 255).round().long().unique().tolist()


def test_seeded_and_resumable():
    split = _split()
    a, b = TaskSampler(split, [0], 3, 1, 2, seed=5), TaskSampler(split, [0], 3, 1, 2, seed=5)
    assert torch.equal(a.sample(3).query_x, b.sample(3).query_x)
    state = a.state_dict()
    expected = a.sample(3).query_x
    c = TaskSampler(split, [0], 3, 1, 2, seed=99)
    assert not torch.equal(c.sample(3).query_x, expected)
    c.load_state_dict(state)
    assert torch.equal(c.sample(3).query_x, expected)


def test_fixed_tasks_are_the_same_every_time_and_batched():
    first = FixedTasks(_split(), 1, 7, 3, 1, 2, seed=11)
    second = FixedTasks(_split(), 1, 7, 3, 1, 2, seed=11)
    assert torch.equal(first.idx, second.idx)
    batches = list(first.batches(3))
    assert [len(b) for b in batches] == [3, 3, 1] and all((b.distribution == 1).all() for b in batches)


@pytest.mark.parametrize("device", DEVICES)
def test_fixed_tasks_are_the_same_on_every_device(device):
    on_cpu = FixedTasks(_split(), 0, 9, 3, 1, 2, seed=3)
    there = FixedTasks(_split(device), 0, 9, 3, 1, 2, seed=3)
    assert torch.equal(on_cpu.idx, there.idx)
    assert torch.equal(next(on_cpu.batches(9)).query_x, next(there.batches(9)).query_x.cpu())


def test_a_fixed_task_alone_equals_its_place_in_the_batches():
    tasks = FixedTasks(_split(), 0, 5, 3, 1, 2, seed=2)
    alone = tasks.task(3)
    batched = list(tasks.batches(2))[1]
    assert torch.equal(alone.query_x[0], batched.query_x[1]) and len(alone) == 1
