"""The NumPy example as a participant the tests can kill mid-round: it logs each fit's start
and end, and hangs in the round named by HANG_IN_ROUND.

    python resumable.py INVITE KEY DATA SHARD LOG
"""

import importlib.util
import os
import sys
import time

import harambee

invite, key, data, shard, log_path = sys.argv[1:6]
example = os.path.join(os.path.dirname(__file__), "../../../../examples/python/numpy_logreg.py")
spec = importlib.util.spec_from_file_location("numpy_logreg", example)
logreg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(logreg)


def log(line):
    with open(log_path, "a") as f:
        f.write(line + "\n")


def fit(parameters, config):
    log(f"fit start {config['round']}")
    if os.environ.get("HANG_IN_ROUND") == str(config["round"]):
        time.sleep(600)
    result = logreg.fit(parameters, config)
    log(f"fit done {config['round']}")
    return result


index, count = (int(v) for v in shard.split("/"))
local = {
    "train": logreg.load(data, "train", (index, count)),
    "test": logreg.load(data, "t10k", (index, count)),
}
report = harambee.join(invite, key, fit=fit, evaluate=logreg.evaluate, data=local, name="resumable")
print(f"acknowledged {report.acknowledged}; {report.finish_message}")
