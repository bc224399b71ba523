"""Numbering the locked bus cycles, so that the checks can tell whether a read and a write
belong to the same locked read-modify-write."""

__all__ = ["LockTracker"]


class LockTracker:
    """Numbers the locked bus cycles: call `step` once a cycle; a new id each time ``cyc`` and
    ``lock`` rise together or the arbiter hands a held lock to another master."""

    def __init__(self):
        self.current = None
        self._ids = 0
        self._grant = None

    def step(self, cyc, lock, grant=None):
        """Returns the id of the locked bus cycle in progress, or None."""
        if not (cyc and lock):
            self.current = None
        elif self.current is None or grant != self._grant:
            self._ids += 1
            self.current = self._ids
        self._grant = grant
        return self.current
