"""What an incident cost a bounded load (reid.serving.load.recovery): the requests answered after it, the failures by
what they got, and the seconds until every request sent got its status again."""

from __future__ import annotations

from reid.serving.load import Answer, recovery


def test_recovery_counts_failures_after_the_incident_and_when_the_last_one_was_sent() -> None:
    answers = [Answer("search", 200, 200, 0.0, 0.5),  # before the kill: not counted
               Answer("search", 200, "ConnectionError", 9.0, 10.5),  # in flight at the kill: counted
               Answer("search", 200, 500, 11.0, 11.2),
               Answer("healthz", 200, 200, 11.5, 11.6),
               Answer("search: no token", 401, 401, 12.0, 12.1),
               Answer("image", 200, 503, 13.0, 14.0),
               Answer("search", 200, 200, 13.5, 13.9),  # sent after the last failure was, succeeded
               Answer("search", 200, 200, 15.0, 15.2)]
    figures = recovery(answers, since=10.0)
    assert figures == {"answered": 7, "failed": 3, "failures": {"500": 1, "503": 1, "ConnectionError": 1},
                       "last_failure_sent_s": 3.0, "last_failure_answered_s": 4.0, "succeeded_after": 2}


def test_recovery_without_a_failure_has_no_recovery_time() -> None:
    answers = [Answer("search", 200, 200, 1.0, 2.0), Answer("search: not JSON", 400, 400, 3.0, 3.1)]
    assert recovery(answers, since=0.5) == {"answered": 2, "failed": 0, "failures": {}, "last_failure_sent_s": None,
                                            "last_failure_answered_s": None, "succeeded_after": 2}
    assert Answer("search: not JSON", 400, 400, 0, 0).failed is False and Answer("search", 200, 429, 0, 0).failed
