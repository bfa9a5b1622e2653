"""Tests for attention_book.checkpoints: the shipped dates models and the training behind them."""

import copy
import dataclasses
import json
import math

import pytest
import torch

from attention_book import checkpoints, dates, gpt, reproducibility, train, transformer


@pytest.fixture(autouse=True)
def one_thread():
    """The checkpoints were trained at the book's one thread; so are these tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("kind", "steps"), checkpoints.SAVED_RUNS)
def test_load_gives_the_trained_model_in_eval_mode_with_its_metadata(kind, steps):
    model, meta = checkpoints.load_dates_checkpoint(kind, steps)
    expected = gpt.GPT if kind == "gpt" else transformer.Transformer
    assert isinstance(model, expected) and not model.training
    fresh = checkpoints.new_model(kind)
    shapes = {k: v.shape for k, v in fresh.state_dict().items()}
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert not all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    )
    assert meta["kind"] == kind and meta["steps"] == steps and meta["seed"] == 0
    assert len(meta["losses"]) == steps and all(math.isfinite(x) for x in meta["losses"])
    assert meta["losses"][0] > 2.0 > 0.05 > meta["losses"][-1]
    assert meta["exact_match"] >= 0.97 and meta["torch_version"]
    if kind == "gpt":  # tied: one matrix for the embedding and the output layer
        assert model.lm_head.weight is model.embed.weight


def test_the_shipped_metadata_is_small_json_beside_the_weights():
    for kind, steps in checkpoints.SAVED_RUNS:
        weights, meta_path = checkpoints.checkpoint_paths(kind, steps)
        assert weights.suffix == ".safetensors" and weights.stat().st_size < 1_000_000
        recipe = json.loads(meta_path.read_text())["recipe"]
        assert recipe["lr"] == 5e-3  # the training fields only, not the schedule lengths
        assert not set(checkpoints.UNUSED_RECIPE_FIELDS) & set(recipe)


def test_unknown_kind_and_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="kind"):
        checkpoints.load_dates_checkpoint("bert")
    with pytest.raises(ValueError, match="kind"):
        checkpoints.train_dates_model("bert")
    with pytest.raises(ValueError, match="stop_after"):
        checkpoints.train_dates_model("gpt", 10, stop_after=11)
    with pytest.raises(ValueError, match="loss_on_source"):
        checkpoints.train_dates_model("encdec", loss_on_source=True)
    with pytest.raises(TypeError, match="on_step"):
        checkpoints.train_dates_model("gpt", on_step="every 10 steps")


def test_a_missing_checkpoint_names_the_script(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="make_checkpoints"):
        checkpoints.load_dates_checkpoint("gpt")
    with pytest.raises(FileNotFoundError, match="saved runs"):
        checkpoints.load_dates_checkpoint("gpt", 400)


@pytest.mark.parametrize("kind", checkpoints.KINDS)
def test_a_short_run_repeats_the_first_logged_losses(kind):
    _, meta = checkpoints.load_dates_checkpoint(kind)
    calls = []
    state = torch.random.get_rng_state()
    model, history = checkpoints.train_dates_model(
        kind, stop_after=3, progress=False, on_step=lambda net, step: calls.append(step)
    )
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    assert calls == [0, 1, 2] and not model.training
    torch.testing.assert_close(
        torch.tensor(history.losses), torch.tensor(meta["losses"][:3]), atol=1e-3, rtol=0
    )


def test_the_source_loss_changes_only_the_labels():
    starts = []

    def keep_start(net, step):
        if step == 0:
            starts.append(copy.deepcopy(net.state_dict()))

    _, target_only = checkpoints.train_dates_model(
        "gpt", stop_after=1, progress=False, on_step=keep_start
    )
    _, both = checkpoints.train_dates_model(
        "gpt", stop_after=1, progress=False, loss_on_source=True, on_step=keep_start
    )
    # the same initial weights ...
    for a, b in zip(starts[0].values(), starts[1].values(), strict=True):
        assert torch.equal(a, b)
    # ... the same inputs, and labels that add source positions to the target ones ...
    recipe = dates.RECIPE
    examples = dates.sample(recipe.train_examples, "train", seed=recipe.seed)
    x_t, y_t = dates.encode_lm_examples(examples)
    x_s, y_s = dates.encode_lm_examples(examples, loss_on_source=True)
    scored = y_t != dates.PAD_ID
    assert torch.equal(x_t, x_s) and torch.equal(y_s[scored], y_t[scored])
    assert (y_s != dates.PAD_ID).sum() > scored.sum()
    # ... and the same first batch: each first loss is the start model's on it
    model = checkpoints.new_model("gpt")
    model.load_state_dict(starts[0])
    with torch.no_grad():
        for x, y, history in ((x_t, y_t, target_only), (x_s, y_s, both)):
            loss_fn = train.batch_loss_fn(x, y, recipe.batch_size, task="lm", seed=0)
            assert math.isclose(loss_fn(model, 0).item(), history.losses[0], rel_tol=1e-5)
    assert both.losses[0] != target_only.losses[0]


@pytest.fixture
def save_to_tmp(monkeypatch, tmp_path):
    """save_dates_checkpoint writing to, and load_dates_checkpoint reading from, tmp_path, with
    exact match stubbed at 0.5 (no held-out decoding)."""
    monkeypatch.setattr(checkpoints, "held_out_examples", lambda n=1000: [])
    monkeypatch.setattr(checkpoints, "exact_match", lambda net, kind, examples: 0.5)
    monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", tmp_path)

    def save(model, history, seed=0):
        return checkpoints.save_dates_checkpoint(model, "encdec", history, seed=seed)

    return save


def test_save_and_load_round_trip(save_to_tmp):
    torch.manual_seed(0)
    model = checkpoints.new_model("encdec")
    meta = save_to_tmp(model, train.History(losses=[2.5, 2.0]), seed=3)
    loaded, meta_back = checkpoints.load_dates_checkpoint("encdec", 2)
    assert meta_back == meta and meta["steps"] == 2 and meta["exact_match"] == 0.5
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="no step"):
        checkpoints.save_dates_checkpoint(model, "encdec", train.History(), seed=0)


def test_exact_match_rejects_no_examples():
    model = checkpoints.new_model("gpt")
    with pytest.raises(ValueError, match="empty"):
        checkpoints.exact_match(model, "gpt", [])


@pytest.mark.parametrize(("kind", "steps"), checkpoints.SAVED_RUNS)
def test_retraining_from_scratch_reaches_the_shipped_exact_match(kind, steps):
    """The full runs (about 2 minutes for the GPT): the shipped weights are what this code
    trains."""
    _, meta = checkpoints.load_dates_checkpoint(kind, steps)
    reproducibility.set_seed(0, threads=1)
    model, _ = checkpoints.train_dates_model(kind, steps, progress=False)
    em = checkpoints.exact_match(model, kind, checkpoints.held_out_examples())
    assert em >= 0.97 and abs(em - meta["exact_match"]) <= 0.02


def test_only_a_training_field_of_the_recipe_invalidates_a_checkpoint(monkeypatch, save_to_tmp):
    """The schedule length is train_dates_model's own argument, so RECIPE.steps may change;
    a change in, say, the learning rate makes the saved weights stale: refused."""
    torch.manual_seed(0)
    save_to_tmp(checkpoints.new_model("encdec"), train.History([1.0]))
    for field in checkpoints.UNUSED_RECIPE_FIELDS:
        changed = dataclasses.replace(dates.RECIPE, **{field: 450})
        monkeypatch.setattr(dates, "RECIPE", changed)
        checkpoints.load_dates_checkpoint("encdec", 1)  # still valid
    monkeypatch.setattr(dates, "RECIPE", dataclasses.replace(dates.RECIPE, lr=1e-3))
    with pytest.raises(ValueError, match="another recipe"):
        checkpoints.load_dates_checkpoint("encdec", 1)


def test_live_loss_gap_compares_the_first_steps_with_the_saved_run():
    meta = {"losses": [2.5, 2.0, 1.5]}
    assert checkpoints.live_loss_gap(train.History([2.5, 2.1]), meta) == pytest.approx(0.1)
    assert checkpoints.live_loss_gap(train.History([2.5, 2.0, 1.5]), meta) == 0.0
    with pytest.raises(ValueError, match="4 steps"):
        checkpoints.live_loss_gap(train.History([2.5] * 4), meta)
    with pytest.raises(ValueError, match="0 steps"):
        checkpoints.live_loss_gap(train.History(), meta)
    with pytest.raises(TypeError, match="History"):
        checkpoints.live_loss_gap([2.5], meta)
    with pytest.raises(TypeError, match="losses"):
        checkpoints.live_loss_gap(train.History([2.5]), {"steps": 3})


def test_the_first_live_steps_of_a_saved_run_match_it():
    """Five live steps of chapter 11's recipe are the saved run's first five."""
    reproducibility.set_seed(0, threads=1)
    _, history = checkpoints.train_dates_model("encdec", 400, stop_after=5, progress=False)
    _, meta = checkpoints.load_dates_checkpoint("encdec", 400)
    assert checkpoints.live_loss_gap(history, meta) < 0.01
