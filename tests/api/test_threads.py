"""The model's torch thread count (issue 17, item 1): one thread by default, set per call and restored."""

import pytest
import torch

from tests.conftest import small_model


@pytest.fixture
def outer_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_training_runs_on_one_thread_by_default_and_restores_the_callers_setting(registered, outer_threads):
    model = small_model(registered)
    seen = []
    model.train(max_steps=2, batch_size=64, progress=False, callback=lambda _t: seen.append(torch.get_num_threads()))
    assert seen == [1, 1]
    assert torch.get_num_threads() == outer_threads


def test_threads_argument_is_used_for_evaluation_too(registered, outer_threads, monkeypatch):
    model = small_model(registered, threads=None)
    seen = []
    model.train(max_steps=1, batch_size=64, progress=False, callback=lambda _t: seen.append(torch.get_num_threads()))
    assert seen == [outer_threads]  # None keeps the caller's setting
    model.threads = 1
    import samsvae_pyro.api.base as base

    original = base.iwelbo
    monkeypatch.setattr(base, "iwelbo", lambda *a, **k: seen.append(torch.get_num_threads()) or original(*a, **k))
    model.iwelbo(n_particles=2)
    assert seen[-1] == 1 and torch.get_num_threads() == outer_threads


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_rejected(registered, threads):
    with pytest.raises(ValueError, match="threads="):
        small_model(registered, threads=threads)
