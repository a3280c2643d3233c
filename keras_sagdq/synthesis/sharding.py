"""Split synthesis batches across processes that share a directory.

Batch `i` depends only on the seed and `i`, so processes can make disjoint
sets of batches and meet in the directory: shard `k` of `n` makes the
batches `i` with `i % n == k`, saves each as it finishes, then waits for the
others' files. Every shard returns the same images as a single process.
No communication library is needed, only a shared file system, so any
launcher works (`torchrun` sets `RANK` and `WORLD_SIZE`; TensorFlow's
multi-worker launchers set `TF_CONFIG`).
"""

import dataclasses
import json
import os
import time


@dataclasses.dataclass(frozen=True)
class Shard:
    """This process's part of a sharded synthesis run.

    Args:
        index: which shard this process is, `0 <= index < count`.
        count: how many processes share the run.
        timeout_s: how long to wait for another shard's files before
            giving up.
        poll_s: seconds between two looks at the directory while waiting.

    Raises:
        ValueError: if `count < 1` or `index` is outside `[0, count)`.

    Example:

    >>> Shard(1, 4).owns(5)
    True
    >>> Shard.parse("0/2")
    Shard(index=0, count=2, timeout_s=86400.0, poll_s=2.0)
    """

    index: int = 0
    count: int = 1
    timeout_s: float = 86400.0
    poll_s: float = 2.0

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise ValueError(f"`count` must be an int. Received: count={self.count!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise ValueError(f"`index` must be an int. Received: index={self.index!r}")
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                "A shard needs count >= 1 and 0 <= index < count. Received: "
                f"index={self.index}, count={self.count}"
            )

    @property
    def sharded(self):
        return self.count > 1

    def owns(self, batch_index):
        """Whether this shard makes batch `batch_index`."""
        return batch_index % self.count == self.index

    @classmethod
    def parse(cls, text):
        """`"k/n"` (as on a command line) -> `Shard(k, n)`.

        Raises:
            ValueError: if `text` is not two integers separated by `/`.
        """
        try:
            index, count = (int(part) for part in str(text).split("/"))
        except ValueError:
            raise ValueError(
                f"A shard is written 'index/count', e.g. '0/2'. Received: {text!r}"
            ) from None
        return cls(index, count)

    @classmethod
    def from_environment(cls, environ=None):
        """The shard a launcher gave this process, or `Shard(0, 1)` if none.

        Reads `RANK` / `WORLD_SIZE` (torchrun, and most PyTorch launchers)
        or `TF_CONFIG`'s worker index and worker count.

        Raises:
            ValueError: if the variables are set but malformed.
        """
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" in environ:
            try:
                return cls(int(environ.get("RANK", "0")), int(environ["WORLD_SIZE"]))
            except ValueError as error:
                raise ValueError(
                    f"RANK / WORLD_SIZE do not describe a shard ({error}). "
                    f"Received: RANK={environ.get('RANK')!r}, "
                    f"WORLD_SIZE={environ['WORLD_SIZE']!r}"
                ) from None
        if "TF_CONFIG" in environ:
            try:
                tf_config = json.loads(environ["TF_CONFIG"])
                workers = tf_config["cluster"]["worker"]
                task = tf_config["task"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(
                    f"TF_CONFIG has no worker cluster and task ({error!r}). "
                    f"Received: TF_CONFIG={environ['TF_CONFIG']!r}"
                ) from None
            if task.get("type") == "worker":
                return cls(int(task.get("index", 0)), len(workers))
        return cls()


def resolve_shard(shard):
    """A `Shard` from `None` (the launcher's, if any), `"k/n"`, `(k, n)` or a `Shard`.

    Raises:
        ValueError: for anything else, or an invalid shard.
    """
    if shard is None:
        return Shard.from_environment()
    if isinstance(shard, Shard):
        return shard
    if isinstance(shard, str):
        return Shard.parse(shard)
    if isinstance(shard, (tuple, list)) and len(shard) == 2:
        return Shard(*shard)
    raise ValueError(
        "`shard` must be None, 'index/count', (index, count) or a Shard. "
        f"Received: shard={shard!r}"
    )


def wait_for(load, shard, what):
    """Call `load()` until it returns something other than None; return that.

    Args:
        load: returns the awaited value, or None while it is not there.
        shard: the waiting `Shard` (its `timeout_s` and `poll_s`).
        what: what is awaited, for the error message.

    Raises:
        TimeoutError: after `shard.timeout_s` seconds, naming `what`.
    """
    deadline = time.monotonic() + shard.timeout_s
    while True:
        value = load()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Shard {shard.index}/{shard.count} waited {shard.timeout_s:.0f} s "
                f"for {what}; is the process that makes it still running?"
            )
        time.sleep(shard.poll_s)
