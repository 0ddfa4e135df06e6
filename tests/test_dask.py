"""fastlstm.dask on a real cluster (a distributed.LocalCluster of two worker processes) and on Dask's
threaded scheduler: predict, gradients and fit against the same model run on the whole batch in one
process; chunkings, backends and models that cannot go to the workers; a worker dying mid-call."""
import dataclasses
import fcntl
import os
import sys
import threading

import numpy as np
import pytest

import fastlstm
from fastlstm.training import SGD, SequenceModel, fit, mean_squared_error, softmax_cross_entropy

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
import cloudpickle  # noqa: E402  (a dependency of dask)
import dask  # noqa: E402
import fastlstm.dask as fdask  # noqa: E402

# The losses below that kill their worker are defined here: ship them by value, since the worker
# processes need not import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# T ≠ B ≠ I ≠ H; the batch in uneven chunks, one of a single sequence.
STEPS, BATCH, INPUTS, HIDDEN, OUTPUTS = 5, 8, 3, 4, 2
CHUNKS = (3, 1, 4)
# Some sequences empty, and the whole second chunk (one sequence) empty.
LENGTHS = np.array([5, 0, 2, 0, 3, 5, 1, 4])
RNG = np.random.default_rng(7)
SCHEDULERS = ["threads", "cluster"]


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each; a task is given up after killing its worker twice."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                      env={"NUMBA_NUM_THREADS": "1"}) as local_cluster:
            with distributed.Client(local_cluster) as client:
                yield client


@pytest.fixture(params=SCHEDULERS)
def scheduler(request):
    """Run the test on Dask's threaded scheduler, or on the cluster (its client the current scheduler)."""
    if request.param == "threads":
        with dask.config.set(scheduler="threads"):
            yield None
    else:
        client = request.getfixturevalue("cluster")
        with client.as_current(), dask.config.set(scheduler=client.get):
            yield client


def layer(kind="lstm", dtype="float64", seed=0, **options):
    classes = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}
    return classes[kind](INPUTS, HIDDEN, dtype=dtype, seed=seed, **options)


def sequences(batch_first=False, dtype="float64"):
    """(x in memory, x as a dask array chunked along the batch by CHUNKS)."""
    x = RNG.standard_normal((BATCH, STEPS, INPUTS) if batch_first else (STEPS, BATCH, INPUTS)).astype(dtype)
    chunks = (CHUNKS, STEPS, INPUTS) if batch_first else (STEPS, CHUNKS, INPUTS)
    return x, da.from_array(x, chunks=chunks)


# ---------------------------------------------------------------- predict

PREDICT_CASES = {
    "lstm-layer-lengths": (lambda: layer("lstm", peephole=True), False, LENGTHS),
    "gru-bidirectional-batch_first": (lambda: layer("gru", bidirectional=True, batch_first=True, num_layers=2),
                                      True, None),
    "rnn-layer-no-bias": (lambda: layer("rnn", nonlinearity="relu", bias=False), False, LENGTHS),
    "sequence-model": (lambda: SequenceModel(layer("gru", reset_after=False), OUTPUTS, seed=1), False, LENGTHS),
    "final-model-batch_first": (lambda: SequenceModel(layer("lstm", batch_first=True, bidirectional=True),
                                                      OUTPUTS, head="final", seed=1), True, LENGTHS),
}


@pytest.mark.parametrize("case", PREDICT_CASES)
def test_predict_matches_the_whole_batch_in_one_process(case, scheduler):
    make, batch_first, lengths = PREDICT_CASES[case]
    model = make()
    x, chunked = sequences(batch_first)
    result = fdask.predict(model, chunked, lengths)
    assert isinstance(result, da.Array)
    expected = model(x, lengths=lengths) if isinstance(model, SequenceModel) else model(x, None, lengths)[0]
    batch_axis = 0 if batch_first or getattr(model, "head", None) == "final" else 1
    assert result.chunks[batch_axis] == CHUNKS
    assert result.shape == expected.shape and result.dtype == expected.dtype
    np.testing.assert_allclose(result.compute(), expected, rtol=1e-12, atol=1e-14)


def test_predict_in_float32_matches_the_whole_batch(scheduler):
    model = SequenceModel(layer("lstm", dtype="float32"), OUTPUTS, seed=1)
    x, chunked = sequences(dtype="float32")
    result = fdask.predict(model, chunked, LENGTHS).compute()
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, model(x, lengths=LENGTHS), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("place", ["graph", "cluster"])
def test_the_parameters_travel_once_per_call_not_once_per_task(place, cluster):
    """The graph of a prediction over many chunks does not grow by the model's size per chunk."""
    model = fastlstm.LSTM(INPUTS, 64, seed=0, dtype="float64")      # 150 kB of parameters
    size = sum(value.nbytes for value in model.params.values())
    x = da.zeros((STEPS, 64, INPUTS), chunks=(STEPS, 4, INPUTS))   # 16 chunks
    with dask.config.set(scheduler=cluster.get if place == "cluster" else "threads"):
        result = fdask.predict(model, x)
    graph = dict(result.__dask_graph__())
    if place == "cluster":
        assert len(cloudpickle.dumps(graph)) < size            # the graph refers to the scattered model ...
        outside = set().union(*(getattr(task, "dependencies", ()) for task in graph.values())) - set(graph)
        assert len(outside) == 1
        assert len(cluster.who_has()[outside.pop()]) == 2     # ... which every worker holds
    else:
        assert size < len(cloudpickle.dumps(graph)) < 2 * size  # the model is one key of the graph
    np.testing.assert_array_equal(result.compute(scheduler=cluster.get if place == "cluster" else "threads"),
                                  model(np.zeros((STEPS, 64, INPUTS)))[0])


# ---------------------------------------------------------------- gradients

GRADIENT_CASES = {
    "sequence-mse-lengths": (lambda: SequenceModel(layer("lstm", peephole=True), OUTPUTS, seed=1), False,
                             "mse", LENGTHS),
    "sequence-mse-batch_first-initial-state": (
        lambda: SequenceModel(layer("gru", batch_first=True, bidirectional=True), OUTPUTS, seed=1,
                              learn_initial_state=True), True, "mse", None),
    "sequence-labels-lengths": (lambda: SequenceModel(layer("rnn", num_layers=2), 3, seed=1), False, "labels",
                                LENGTHS),
    "final-labels-lengths": (lambda: SequenceModel(layer("lstm", bidirectional=True), 3, head="final", seed=1,
                                                   learn_initial_state=True), False, "labels", LENGTHS),
    "final-mse-no-bias": (lambda: SequenceModel(layer("gru", bias=False), OUTPUTS, head="final", seed=1),
                          False, "mse", None),
}


def targets(model, kind, batch_first):
    """Random targets for the model's output: real values (mse) or class labels."""
    if model.head == "final":
        shape = (BATCH, model.out_features)
    else:
        shape = (BATCH, STEPS, model.out_features) if batch_first else (STEPS, BATCH, model.out_features)
    if kind == "mse":
        return mean_squared_error, RNG.standard_normal(shape)
    return softmax_cross_entropy, RNG.integers(0, model.out_features, shape[:-1])


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradients_equal_loss_and_gradients_on_the_whole_batch(case, scheduler):
    make, batch_first, kind, lengths = GRADIENT_CASES[case]
    model = make()
    x, chunked = sequences(batch_first)
    loss, target = targets(model, kind, batch_first)
    before = {name: value.copy() for name, value in model.params.items()}
    value, grads = fdask.gradients(model, loss, chunked, da.from_array(target), lengths)
    expected_value, expected = model.loss_and_gradients(loss, x, target, lengths)
    assert value == pytest.approx(expected_value, rel=1e-13)
    assert set(grads) == set(expected)
    for name in expected:
        assert grads[name].dtype == expected[name].dtype
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-11, atol=1e-14, err_msg=name)
    for name, value in model.params.items():
        np.testing.assert_array_equal(value, before[name])


def test_gradients_in_float32_agree_with_the_whole_batch(scheduler):
    model = SequenceModel(layer("gru", dtype="float32"), OUTPUTS, seed=1)
    x, chunked = sequences(dtype="float32")
    loss, target = targets(model, "mse", False)
    value, grads = fdask.gradients(model, loss, chunked, target.astype(np.float32), LENGTHS)
    expected_value, expected = model.loss_and_gradients(loss, x, target.astype(np.float32), LENGTHS)
    assert value == pytest.approx(expected_value, rel=1e-6)
    for name in expected:
        assert grads[name].dtype == np.float32
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_regularised_model_in_inference_mode_matches_and_in_training_each_chunk_draws_masks(cluster):
    model = SequenceModel(layer("lstm", num_layers=2, dropout=0.3), OUTPUTS, seed=1)
    x, chunked = sequences()
    target = RNG.standard_normal((STEPS, BATCH, OUTPUTS))
    value, grads = fdask.gradients(model, mean_squared_error, chunked, target, LENGTHS, training=False)
    expected_value, expected = model.loss_and_gradients(mean_squared_error, x, target, LENGTHS, training=False)
    assert value == pytest.approx(expected_value, rel=1e-13)
    for name in expected:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-11, atol=1e-14, err_msg=name)

    def train(rng_seed, client):
        return fdask.gradients(model, mean_squared_error, chunked, target, LENGTHS, training=True,
                               rng=np.random.default_rng(rng_seed), client=client)

    with dask.config.set(scheduler="threads"):
        on_threads = train(3, None)
    on_cluster = train(3, cluster)
    another = train(4, cluster)
    # The masks follow from the seed and the chunk, whichever worker runs it ...
    assert on_threads[0] == on_cluster[0]
    for name in expected:
        np.testing.assert_array_equal(on_threads[1][name], on_cluster[1][name], err_msg=name)
    # ... and are drawn: another seed, other masks, another loss; neither is the inference loss.
    assert len({on_cluster[0], another[0], expected_value}) == 3


# ---------------------------------------------------------------- fit

def test_fit_takes_the_steps_training_fit_takes_on_the_same_mini_batches(scheduler):
    def make():
        return SequenceModel(layer("gru", dtype="float64", seed=3), OUTPUTS, seed=4)

    x, chunked = sequences()
    target = RNG.standard_normal((STEPS, BATCH, OUTPUTS))
    x_check, chunked_check = sequences()
    target_check = RNG.standard_normal((STEPS, BATCH, OUTPUTS))
    batch_size = 3      # mini-batches 0:3, 3:6, 6:8 cut across CHUNKS (3, 1, 4)
    data = [(x[:, s:s + batch_size], target[:, s:s + batch_size], LENGTHS[s:s + batch_size])
            for s in range(0, BATCH, batch_size)]

    expected_model, model = make(), make()
    expected = fit(expected_model, mean_squared_error, SGD(expected_model.params, lr=0.5, momentum=0.5), data,
                   epochs=2, clip_norm=0.05, validation=(x_check, target_check), progress=False)
    history = fdask.fit(model, mean_squared_error, SGD(model.params, lr=0.5, momentum=0.5), chunked, target,
                        LENGTHS, epochs=2, batch_size=batch_size, progress=False, clip_norm=0.05,
                        validation=(chunked_check, target_check))
    assert len(history.batch_loss) == 6 and max(history.gradient_norm) > 0.05     # clipping acted
    for field in ("loss", "batch_loss", "validation_loss", "gradient_norm"):
        np.testing.assert_allclose(getattr(history, field), getattr(expected, field), rtol=1e-11, err_msg=field)
    for name, value in expected_model.params.items():
        np.testing.assert_allclose(model.params[name], value, rtol=1e-10, atol=1e-13, err_msg=name)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_fit_refuses_a_bad_batch_size_and_a_diverging_loss():
    model = SequenceModel(layer("rnn"), OUTPUTS, seed=1)
    x, chunked = sequences()
    target = np.zeros((STEPS, BATCH, OUTPUTS))
    with pytest.raises(ValueError, match=r"batch_size: expected a positive integer or None, got 0"):
        fdask.fit(model, mean_squared_error, SGD(model.params, lr=0.1), chunked, target, batch_size=0)
    with dask.config.set(scheduler="threads"):
        with pytest.raises(FloatingPointError, match=r"fit: the loss became inf at epoch 0"):
            fdask.fit(model, mean_squared_error, SGD(model.params, lr=0.1), chunked, np.full_like(target, 1e300),
                      progress=False)


# ---------------------------------------------------------------- what cannot go to the workers

def test_x_chunked_along_time_or_features_is_refused_with_the_rechunk_to_use():
    model = layer("lstm")
    x = np.zeros((STEPS, BATCH, INPUTS))
    with pytest.raises(ValueError, match=r"x: expected chunks along the batch \(axis 1\) only, one chunk spanning "
                                         r"the 5 steps .* Rechunk it: x.rechunk\(\{0: -1, 2: -1\}\)"):
        fdask.predict(model, da.from_array(x, chunks=(2, 4, INPUTS)))
    with pytest.raises(ValueError, match=r"x: expected chunks along the batch"):
        fdask.gradients(SequenceModel(model, 1), mean_squared_error, da.from_array(x, chunks=(STEPS, 4, 1)),
                        np.zeros((STEPS, BATCH, 1)))
    with pytest.raises(TypeError, match=r"x: expected a dask array \(T, B, I\), got ndarray"):
        fdask.predict(model, x)
    with pytest.raises(ValueError, match=r"x: expected 3 input features \(the layer's input_size\), got shape"):
        fdask.predict(model, da.zeros((STEPS, BATCH, 2)))
    with pytest.raises(ValueError, match=r"x: expected at least one sequence in the batch, got shape \(5, 0, 3\)"):
        fdask.predict(model, da.zeros((STEPS, 0, INPUTS)))


def test_bad_targets_lengths_and_models_are_refused_before_anything_runs():
    model = SequenceModel(layer("gru"), OUTPUTS, seed=1)
    x, chunked = sequences()
    with pytest.raises(ValueError, match=r"target: expected the model's output shape \(5, 8, 2\) "
                                         r"\(or \(5, 8\) for class labels\), got \(5, 7, 2\)"):
        fdask.gradients(model, mean_squared_error, chunked, np.zeros((STEPS, BATCH - 1, OUTPUTS)))
    with pytest.raises(ValueError, match=r"lengths: expected values in \[0, 5\], got \[0, 6\]"):
        fdask.predict(model, chunked, LENGTHS + (LENGTHS == 5))
    with pytest.raises(ValueError, match=r"lengths: expected 8 integers, one per sequence of x, got float64"):
        fdask.predict(model, chunked, LENGTHS.astype(float))
    with pytest.raises(TypeError, match=r"model: expected a fastlstm.training.SequenceModel, got LSTM"):
        fdask.gradients(layer("lstm"), mean_squared_error, chunked, np.zeros((STEPS, BATCH, HIDDEN)))


def test_a_backend_the_workers_cannot_run_is_refused(cluster):
    model = SequenceModel(layer("lstm"), OUTPUTS, seed=1)
    # The configuration a backend="cuda" layer has (building one here would need a GPU).
    model.recurrent.config = dataclasses.replace(model.recurrent.config, backend="cuda")
    _, chunked = sequences()
    message = r"model: its backend 'cuda' cannot run on Dask's workers"
    with pytest.raises(ValueError, match=message):
        fdask.gradients(model, mean_squared_error, chunked, np.zeros((STEPS, BATCH, OUTPUTS)), client=cluster)
    with pytest.raises(ValueError, match=message.replace("model", "layer_or_model")):
        fdask.predict(model, chunked, client=cluster)


def test_a_model_that_cannot_be_pickled_is_refused(cluster):
    model = SequenceModel(layer("lstm"), OUTPUTS, seed=1)
    model.lock = threading.Lock()
    _, chunked = sequences()
    with pytest.raises(TypeError, match=r"layer_or_model: it cannot be pickled to travel to Dask's workers "
                                        r"\(TypeError: cannot pickle '_thread.lock' object\)"):
        fdask.predict(model, chunked, client=cluster)


# ---------------------------------------------------------------- a worker dies (last: workers restart)

def killing_loss(marker, times):
    """mean_squared_error, except that its first ``times`` calls (over every process) kill their worker."""
    def loss(prediction, target, lengths=None, time_axis=0):
        with open(marker, "a+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)       # one worker at a time reads and adds to the count
            file.seek(0)
            deaths = len(file.read())
            if deaths < times:
                file.write("x")
                file.flush()
                os._exit(1)
        return mean_squared_error(prediction, target, lengths, time_axis)
    return loss


def test_a_worker_dying_mid_call_is_retried_and_nothing_is_dropped(cluster, tmp_path):
    model = SequenceModel(layer("lstm"), OUTPUTS, seed=1)
    x, chunked = sequences()
    target = RNG.standard_normal((STEPS, BATCH, OUTPUTS))
    marker = tmp_path / "deaths"
    value, grads = fdask.gradients(model, killing_loss(marker, 1), chunked, target, LENGTHS, client=cluster)
    assert marker.read_text() == "x"                         # a worker did die in the middle of the call
    expected_value, expected = model.loss_and_gradients(mean_squared_error, x, target, LENGTHS)
    assert value == pytest.approx(expected_value, rel=1e-13)
    for name in expected:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-11, atol=1e-14, err_msg=name)
    cluster.wait_for_workers(2, timeout=60)


def test_a_task_that_keeps_killing_its_workers_makes_the_call_raise(cluster, tmp_path):
    model = SequenceModel(layer("lstm"), OUTPUTS, seed=1)
    _, chunked = sequences()
    target = np.zeros((STEPS, BATCH, OUTPUTS))
    marker = tmp_path / "deaths"
    # Dask gives up on a task at its second victim (allowed-failures=1): KilledWorker, or, when the
    # second victim held the last copy of the scattered model, its dependents are cancelled. How many
    # workers die depends on which chunks' tasks run at once: at least 2, and no task kills more than
    # twice (at its second victim Dask gives up on it).
    with pytest.raises((distributed.scheduler.KilledWorker, distributed.client.FutureCancelledError)):
        fdask.gradients(model, killing_loss(marker, 1000), chunked, target, client=cluster)
    assert 2 <= len(marker.read_text()) <= 2 * len(CHUNKS)
    cluster.wait_for_workers(2, timeout=60)
