"""The main job: ``python -m fastlstm demo`` trains an LSTM forecaster on yearly sunspot numbers.

The data (``fastlstm/data/sunspots_yearly.csv``, 1700–2008) is the public-domain yearly
series of the NOAA National Geophysical Data Center, as shipped by statsmodels
(``statsmodels.datasets.sunspots``). The model reads the series (√-transformed and
standardised on the training years) and at every year predicts the next one. It is
trained on the years before ``--test-years``, then forecasts each test year one step ahead
from the true history; its error is printed next to two naive forecasts' (last year's
value, and the value one solar cycle, 11 years, before) and a plot of forecast against
truth is written to a PNG.
"""
from dataclasses import dataclass
from importlib import resources

import numpy as np

CYCLE = 11


@dataclass
class DemoResult:
    """Test-period errors (root mean squared, in sunspot numbers) and where the plot went."""

    years: np.ndarray
    truth: np.ndarray
    forecast: np.ndarray
    rmse: dict
    plot: str


def load_sunspots():
    """(years, values): the yearly sunspot numbers 1700–2008, two (309,) arrays."""
    text = resources.files("fastlstm").joinpath("data/sunspots_yearly.csv").read_text()
    table = np.loadtxt(text.splitlines(), delimiter=",", skiprows=1)
    return table[:, 0].astype(int), table[:, 1]


def _windows(series, length, stride):
    """Overlapping (length, 1) windows of ``series`` and their next-value targets, as (T, B, 1)."""
    starts = range(0, len(series) - length, stride)
    x = np.stack([series[s:s + length] for s in starts], axis=1)[..., None]
    y = np.stack([series[s + 1:s + length + 1] for s in starts], axis=1)[..., None]
    return x, y


def run(epochs=150, hidden_size=32, test_years=60, window=40, seed=0, plot="sunspots_forecast.png",
        progress=True, print_fn=print):
    """Train, forecast the test years, compare with the naive forecasts, and plot.

    Parameters
    ----------
    epochs, hidden_size, test_years, window, seed : int
    plot : str or None
        Path of the PNG to write (None: no plot).
    progress : bool
        Show the training progress bar.
    print_fn : callable
        Where the report's lines go.

    Returns
    -------
    DemoResult
    """
    from . import LSTM
    from .training import Adam, SequenceModel, fit, mean_squared_error, predict

    years, values = load_sunspots()
    if not 0 < test_years < len(values) - window - CYCLE:
        raise ValueError(f"test_years: expected 1 to {len(values) - window - CYCLE - 1}, got {test_years}")
    transformed = np.sqrt(values)
    split = len(values) - test_years
    mean, scale = transformed[:split].mean(), transformed[:split].std()
    series = ((transformed - mean) / scale).astype(np.float32)

    x, y = _windows(series[:split], window, 2)
    rng = np.random.default_rng(seed)

    def batches(epoch):
        order = rng.permutation(x.shape[1])
        return [(x[:, part], y[:, part]) for part in np.array_split(order, max(1, x.shape[1] // 16))]

    model = SequenceModel(LSTM(1, hidden_size, seed=seed), 1, seed=seed)
    print_fn(f"training an LSTM({hidden_size}) on {years[0]}-{years[split - 1]} "
             f"({x.shape[1]} windows of {window} years), {epochs} epochs")
    history = fit(model, mean_squared_error, Adam(model.params, lr=3e-3), batches, epochs=epochs, clip_norm=1.0,
                  progress=progress)

    # one pass over the whole series: the output at year t is the forecast of year t + 1
    predicted = predict(model, series[:-1, None, None])[:, 0, 0]
    forecast = np.square(np.maximum(predicted[split - 1:] * scale + mean, 0.0))
    truth = values[split:]
    naive = {"LSTM": forecast, "last value": values[split - 1:-1],
             f"seasonal naive ({CYCLE} y)": values[split - CYCLE:-CYCLE]}
    rmse = {name: float(np.sqrt(np.mean((f - truth) ** 2))) for name, f in naive.items()}
    print_fn(f"final training loss {history.loss[-1]:.4f} (standardised units)")
    print_fn(f"test years {years[split]}-{years[-1]}: root mean squared error, in sunspot numbers")
    for name, error in rmse.items():
        print_fn(f"  {name:<24} {error:7.2f}")
    if plot:
        _plot(years, values, split, naive, plot)
        print_fn(f"plot written to {plot}")
    return DemoResult(years[split:], truth, forecast, rmse, plot)


def _plot(years, values, split, forecasts, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4))
    start = max(0, split - 80)
    axes.plot(years[start:], values[start:], color="black", linewidth=1.5, label="observed")
    styles = {"LSTM": dict(color="tab:red", linewidth=1.5), "last value": dict(color="tab:blue", linestyle=":"),
              }
    for name, forecast in forecasts.items():
        axes.plot(years[split:], forecast, label=f"{name} forecast",
                  **styles.get(name, dict(color="tab:green", linestyle="--")))
    axes.axvline(years[split] - 0.5, color="grey", linewidth=0.8)
    axes.set_xlabel("year")
    axes.set_ylabel("yearly sunspot number")
    axes.set_title("One-year-ahead forecasts on the test years (fastlstm demo)")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
