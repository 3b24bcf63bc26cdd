"""A participant whose fit and evaluate return one mistake after another: each must stop
`harambee.join` with a clear exception before anything is sent, and the member, rejoining,
finishes its rounds.

    python misbehaving.py INVITE KEY DATA
"""

import importlib.util
import os
import sys

import numpy as np

import harambee

invite, key, data = sys.argv[1:4]
example = os.path.join(os.path.dirname(__file__), "../../../../examples/python/numpy_logreg.py")
spec = importlib.util.spec_from_file_location("numpy_logreg", example)
logreg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(logreg)
W, B = logreg.WEIGHT, logreg.BIAS


def fit_mistake(mistake):
    """A fit that trains, then returns its result spoiled by `mistake`."""

    def fit(parameters, config):
        if mistake == "raises":
            raise RuntimeError("the member's own bug")
        params, n, metrics = logreg.fit(parameters, config)
        if mistake == "missing":
            del params[B]
        elif mistake == "unknown":
            params["extra.weight"] = np.zeros(3, dtype=np.float32)
        elif mistake == "shape":
            params[W] = params[W].T
        elif mistake == "dtype":
            params[W] = params[W].astype(np.float64)
        elif mistake == "nan":
            params[B] = params[B].copy()
            params[B][3] = np.nan
        elif mistake == "negative":
            n = -5
        elif mistake == "not-a-tuple":
            return params
        elif mistake == "not-an-array":
            params[W] = "weights"
        elif mistake == "loss-nan":
            metrics = {"loss": float("nan")}
        return params, n, metrics

    return fit


def evaluate_mistake(parameters, config):
    loss, n, metrics = logreg.evaluate(parameters, config)
    return loss, n, {"accuracy": 1.5}


local = {"train": logreg.load(data, "train", (0, 4)), "test": logreg.load(data, "t10k", (0, 4))}


def attempt(label, fit, evaluate=logreg.evaluate):
    try:
        report = harambee.join(invite, key, fit=fit, evaluate=evaluate, data=local, name="misbehaving")
    except Exception as e:  # noqa: BLE001: the test reads every kind
        print(f"{label} -> {type(e).__name__}: {e}", flush=True)
        return None
    print(f"{label} -> finished, acknowledged {report.acknowledged}", flush=True)
    return report


for mistake in [
    "missing", "unknown", "shape", "dtype", "nan", "negative", "not-a-tuple", "not-an-array",
    "loss-nan", "raises",
]:
    attempt(mistake, fit_mistake(mistake))


class Stop(Exception):
    pass


def fit_round_one(parameters, config):
    if config["round"] == 2:
        raise Stop("round 1 is done")
    return logreg.fit(parameters, config)


attempt("good round 1", fit_round_one)
attempt("evaluate-accuracy", logreg.fit, evaluate_mistake)
attempt("good", logreg.fit)
