"""Type hints for the native part of the `harambee` package."""

from os import PathLike
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

Parameters = Dict[str, npt.NDArray[np.float32]]
"""The global model: one float32 array per tensor, in the federation's layout."""

Config = Dict[str, Any]
"""The round's settings: ``round`` (int), ``epochs`` (int), ``batch_size`` (int; 0 means the
whole local set), ``learning_rate`` (float), ``local_steps`` (int; when not 0, take that many
optimiser steps instead of whole epochs), ``proximal_mu`` (float; FedProx's weight),
``seed`` (int; the same when a round is retried), ``shard`` (``(index, count)`` in community
mode, else ``None``) and ``data`` (what was passed to :func:`join`)."""

Metrics = Optional[Mapping[str, float]]

FitResult = Tuple[Mapping[str, Any], int, Metrics]
"""``(parameters, num_examples, metrics)``: every tensor of the layout as a float32 array of
its shape (NumPy, or anything ``numpy.asarray`` reads without a copy), the number of examples
trained on (positive), and metrics (``"loss"`` is reported as the training loss)."""

EvaluateResult = Optional[Tuple[float, int, Metrics]]
"""``(loss, num_examples, metrics)``; ``metrics["accuracy"]`` in [0, 1] is needed for the
evaluation to be reported. ``None``: nothing to report."""

class HarambeeError(Exception):
    """Every error of the Harambee runtime."""

class SetupError(HarambeeError):
    """A setting, key, invite or state file is wrong."""

class RefusedError(HarambeeError):
    """The coordinator refused a call, for a reason retrying cannot fix."""

class UnreachableError(HarambeeError):
    """The coordinator stayed unreachable longer than ``give_up_after_s``."""

class ModelMismatchError(HarambeeError):
    """The federation's model is not one this participant can train."""

class InvalidUpdateError(HarambeeError):
    """``fit`` or ``evaluate`` returned something the federation cannot take: a missing or
    unknown tensor, a wrong shape or dtype, NaN or infinity, a count that is not positive.
    Nothing was sent; the round goes on without this member."""

class JoinReport:
    """What a participant did."""

    participant_id: int
    """Its id in the federation."""
    acknowledged: List[int]
    """Rounds whose update the coordinator acknowledged."""
    refused: List[Tuple[int, str]]
    """Rounds whose update was refused, with the reason."""
    finish_message: str
    """How the federation ended, as the coordinator said."""
    fit_timings: List[Tuple[int, float, float]]
    """Per ``fit`` call: (round, seconds inside ``fit``, seconds the runtime spent handing the
    parameters over and checking and copying what came back)."""

def join(
    invite: Union[str, PathLike[str]],
    key: Union[str, PathLike[str]],
    *,
    fit: Callable[[Parameters, Config], FitResult],
    evaluate: Optional[Callable[[Parameters, Config], EvaluateResult]] = None,
    data: Any = None,
    name: Optional[str] = None,
    state: Optional[Union[str, PathLike[str]]] = None,
    coordinator: Optional[str] = None,
    insecure: bool = False,
    give_up_after_s: float = 300.0,
) -> JoinReport:
    """Joins the federation of ``invite`` with the key at ``key`` and trains with ``fit``
    (reporting ``evaluate``) every round this member is selected for, until the federation
    finishes.

    The runtime waits on the network with the GIL released. ``fit`` and ``evaluate`` are
    called one at a time from a runtime thread. Their parameters are views of one buffer
    (no copy) that they may change in place; what ``fit`` returns is checked and copied
    once. An exception raised by ``fit`` or ``evaluate`` stops ``join`` and is raised from
    it as it was. Progress is kept in ``state`` (default: beside the key), so a participant
    restarted after a crash resumes without training a round twice.

    ``data`` is handed to ``fit`` and ``evaluate`` as ``config["data"]``. ``coordinator``
    overrides the invite's URL; ``insecure`` speaks plain text to an ``--insecure``
    coordinator (tests only).
    """

def keygen(path: Union[str, PathLike[str]]) -> str:
    """Writes a new ed25519 key to ``path`` (owner-only; never overwrites) and returns its
    public key in hex."""

def public_key(path: Union[str, PathLike[str]]) -> str:
    """The public key (hex) of the key file at ``path``."""
