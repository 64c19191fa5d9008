"""What goes wrong with a peer: it did not start, or it answered something other than what was asked."""


class PeerStartError(RuntimeError):
    """A peer's server exited or never became ready; the message holds the tail of its log."""


class WrongAnswer(AssertionError):
    """A peer answered, but not what was asked for (other features, another customer, other scores)."""
