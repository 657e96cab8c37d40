"""Task sampling: shapes, labels, one distribution per task, seeding, resumable state, fixed tasks."""
import numpy as np
import torch

from gems_core.data import ClassImages, FixedTasks, ImagePool, TaskSampler


def _pool(offset: int, classes: int = 6, per_class: int = 5) -> ImagePool:
    """Image i of class c is filled with the value offset + c, so a task's source can be read off its pixels."""
    labels = np.repeat(np.arange(classes), per_class)
    images = np.broadcast_to((offset + labels)[:, None, None, None], (len(labels), 4, 4, 3)).astype(np.uint8)
    return ImagePool(ClassImages(images.copy(), labels, [f"c{i}" for i in range(classes)]), torch.device("cpu"), 3)


def test_batch_shapes_and_labels():
    sampler = TaskSampler([_pool(0), _pool(100)], ways=3, shots=1, queries=2, seed=0)
    batch = sampler.sample(4)
    assert batch.support_x.shape == (4, 3, 3, 4, 4) and batch.query_x.shape == (4, 6, 3, 4, 4)
    assert batch.support_y[0].tolist() == [0, 1, 2] and batch.query_y[0].tolist() == [0, 0, 1, 1, 2, 2]
    assert batch.support_x.dtype == torch.float32 and float(batch.support_x.max()) <= 1.0


def test_each_task_comes_from_one_distribution_and_classes_match_labels():
    sampler = TaskSampler([_pool(0), _pool(100)], ways=3, shots=1, queries=2, seed=1)
    batch = sampler.sample(20)
    values = torch.cat([batch.support_x, batch.query_x], 1)[:, :, 0, 0, 0] * 255
    for task in range(20):
        source = batch.distribution[task].item()
        assert ((values[task] >= 100) == bool(source)).all()
        for label in range(3):  # every image with one label is from one class
            assert values[task][torch.cat([batch.support_y[task], batch.query_y[task]]) == label].unique().numel() == 1
    assert set(batch.distribution.tolist()) == {0, 1}


def test_classes_without_enough_images_are_never_sampled():
    labels = np.array([0, 0, 0, 1, 2, 2, 2, 3, 3, 3])
    images = np.broadcast_to(labels[:, None, None, None], (10, 2, 2, 3)).astype(np.uint8).copy()
    pool = ImagePool(ClassImages(images, labels, list("abcd")), torch.device("cpu"), 3)
    assert pool.class_names == ["a", "c", "d"]


def test_seeded_and_resumable():
    a = TaskSampler([_pool(0)], 3, 1, 2, seed=5)
    b = TaskSampler([_pool(0)], 3, 1, 2, seed=5)
    assert torch.equal(a.sample(3).query_x, b.sample(3).query_x)
    state = a.state_dict()
    expected = a.sample(3).query_x
    c = TaskSampler([_pool(0)], 3, 1, 2, seed=99)
    c.load_state_dict(state)
    assert torch.equal(c.sample(3).query_x, expected)


def test_fixed_tasks_are_the_same_every_time_and_batched():
    first = FixedTasks(_pool(0), 7, 3, 1, 2, seed=11, pool_id=1)
    second = FixedTasks(_pool(0), 7, 3, 1, 2, seed=11, pool_id=1)
    assert torch.equal(first.idx, second.idx)
    batches = list(first.batches(3))
    assert [len(b) for b in batches] == [3, 3, 1] and all((b.distribution == 1).all() for b in batches)


def test_a_fixed_task_alone_equals_its_place_in_the_batches():
    tasks = FixedTasks(_pool(0), 5, 3, 1, 2, seed=2)
    alone = tasks.task(3)
    batched = list(tasks.batches(2))[1]
    assert torch.equal(alone.query_x[0], batched.query_x[1]) and len(alone) == 1
