"""The shared admission limit (t2i/web/admission.py): places in order, a bounded line, refusal at once, and a
waiting run that leaves the line when it is cancelled."""

from __future__ import annotations

import threading

import pytest

from t2i.web.admission import Admission, QueueFull


def wait_for(condition) -> None:
    event = threading.Event()
    while not condition():
        event.wait(0.005)


def test_runs_wait_in_order_and_the_line_is_bounded():
    admission = Admission(limit=1, queue_size=2)
    assert admission.acquire()
    order, threads = [], []
    for name in ("first", "second"):
        thread = threading.Thread(target=lambda name=name: (admission.acquire(), order.append(name),
                                                            admission.release()))
        thread.start()
        threads.append(thread)
        wait_for(lambda: admission.counts()[1] == len(threads))  # in line before the next one comes
    with pytest.raises(QueueFull, match="1 running and 2 waiting"):
        admission.acquire()
    with pytest.raises(QueueFull):
        admission.refuse_if_full()
    admission.release()
    for thread in threads:
        thread.join()
    assert order == ["first", "second"] and admission.counts() == (0, 0)


def test_a_cancelled_waiting_run_leaves_the_line():
    admission = Admission(limit=1, queue_size=1)
    assert admission.acquire()
    cancel, outcome = threading.Event(), []
    waiting = threading.Thread(target=lambda: outcome.append(admission.acquire(cancel)))
    waiting.start()
    wait_for(lambda: admission.counts() == (1, 1))
    cancel.set()
    admission.wake()
    waiting.join()
    assert outcome == [False] and admission.counts() == (1, 0)
    admission.release()
    assert admission.acquire() and admission.counts() == (1, 0)
