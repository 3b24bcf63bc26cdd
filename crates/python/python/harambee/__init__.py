"""Join a Harambee federation with your own training loop.

Harambee's participant runtime (TLS, keys, signed calls, the protocol, retries, secure
aggregation, progress kept across restarts) is written in Rust; this package runs it and
calls your code for the one thing that is yours: training and evaluating on your data.

    import harambee

    def fit(parameters, config):
        # parameters: {tensor name: numpy.ndarray (float32)}, the round's global model
        # config: round, epochs, batch_size, learning_rate, local_steps, proximal_mu,
        #         seed, shard, data
        ...
        return parameters, num_examples, {"loss": mean_loss}

    def evaluate(parameters, config):
        ...
        return loss, num_examples, {"accuracy": accuracy}

    harambee.join("invite.toml", "member.key", fit=fit, evaluate=evaluate)

See docs/python.md in the repository for a walk through.
"""

from harambee._harambee import (
    HarambeeError,
    InvalidUpdateError,
    JoinReport,
    ModelMismatchError,
    RefusedError,
    SetupError,
    UnreachableError,
    __version__,
    join,
    keygen,
    public_key,
)

__all__ = [
    "HarambeeError",
    "InvalidUpdateError",
    "JoinReport",
    "ModelMismatchError",
    "RefusedError",
    "SetupError",
    "UnreachableError",
    "__version__",
    "join",
    "keygen",
    "public_key",
]
