"""User test functions for the promotion gate's tests, named ``gate_functions:NAME`` in a spec's
[gate] table (tests/ is on sys.path under pytest, and on PYTHONPATH for the CLI's subprocess)."""

from __future__ import annotations

import numpy as np


def scores_are_probabilities(candidate, holdout, champion):
    """Every holdout row gets a score in [0, 1]."""
    _, scores = candidate.predict(holdout)
    ok = bool(len(scores) == holdout.num_rows and np.all((scores >= 0) & (scores <= 1)))
    return ok, f"{len(scores)} of {holdout.num_rows} rows scored, in [{scores.min():.3f}, " \
               f"{scores.max():.3f}]"


def agrees_with_champion(candidate, holdout, champion):
    """The candidate predicts the champion's class on at least 99% of the holdout."""
    if champion is None:
        return True, "no champion to agree with"
    mine, _ = candidate.predict(holdout)
    theirs, _ = champion.predict(holdout)
    share = float(np.mean(mine == theirs))
    return share >= 0.99, f"agrees with v{champion.version} on {share:.1%} of rows"


def reads_a_missing_column(candidate, holdout, champion):
    """Fails the way user code does: a KeyError from the table."""
    return bool(holdout.column("no_such_column")), "unreachable"


def returns_a_score(candidate, holdout, champion):
    """Returns a number, not a verdict."""
    _, scores = candidate.predict(holdout)
    return float(scores.mean())


NOT_A_FUNCTION = 3
