"""bench.lambda_overhead: the warm rows time the handler, not the benchmark's own set-up."""

from __future__ import annotations

from botocore.stub import Stubber

from bench import lambda_overhead
from bench.images import photo_jpeg


def test_warm_overhead_does_no_stubber_bookkeeping_inside_a_timed_call(monkeypatch):
    bookkeeping: list[str] = []
    for method in ("add_response", "activate", "deactivate"):
        original = getattr(Stubber, method)

        def recorder(self, *args, _original=original, _name=method, **kwargs):
            bookkeeping.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Stubber, method, recorder)
    during: list[int] = []
    real_interleaved = lambda_overhead.interleaved

    def checking(variants, repeats, warmup):
        def watched(call):
            def timed():
                before = len(bookkeeping)
                call()
                during.append(len(bookkeeping) - before)

            return timed

        return real_interleaved({name: watched(call) for name, call in variants.items()}, repeats, warmup)

    monkeypatch.setattr(lambda_overhead, "interleaved", checking)
    out = lambda_overhead.warm_overhead({"tiny": photo_jpeg((64, 48))}, {"tiny": 4})
    assert set(out["images"]["tiny"]["ms"]) == {"stub client", "botocore Stubber"}
    assert out["images"]["tiny"]["ms"]["botocore Stubber"]["n"] == 4
    assert out["images"]["tiny"]["b64decode_ms"]["n"] == 4  # in the same loop as the handler
    assert len(during) == 3 * (lambda_overhead.WARMUP + 4)
    assert not any(during), "Stubber.add_response/activate ran inside the timed handler call"
