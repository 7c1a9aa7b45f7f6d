"""Start-up agreement logic, without MPI: a fake communicator plays the other ranks."""

import numpy as np
import pytest

from bluefog_dist.agreement import AgreementError, agree, describe_tree, fingerprint_value


class Recorder:
    """A one-rank 'communicator' that remembers what this rank contributed."""

    def allgather(self, obj):
        self.payload = obj
        return [obj]


class World:
    """Rank 0's view: its own payload first, then the recorded payloads of other ranks."""

    def __init__(self, others):
        self.others = others

    def allgather(self, obj):
        return [obj] + self.others


def payload_of(fields):
    rec = Recorder()
    try:
        agree(rec, fields)
    except AgreementError:
        pass
    return rec.payload


def test_fingerprint_is_stable_and_sensitive():
    a = {"lr": 0.1, "w": np.eye(3)}
    assert fingerprint_value(a) == fingerprint_value({"w": np.eye(3), "lr": 0.1})
    assert fingerprint_value(a) != fingerprint_value({"lr": 0.1, "w": 2 * np.eye(3)})
    assert fingerprint_value(np.zeros(3, np.float32)) != fingerprint_value(np.zeros(3, np.float64))

    class Obj:
        pass

    # object addresses differ between processes: masked; callables by qualified name
    assert fingerprint_value(Obj()) == fingerprint_value(Obj())
    assert fingerprint_value(lambda x: x) == fingerprint_value(lambda y: y)
    assert fingerprint_value(np.sin) != fingerprint_value(np.cos)
    assert describe_tree({"a": np.zeros((2, 3), np.float32)}) == "[(2, 3):float32]"


def test_equal_fields_pass():
    fields = {"topology": "ring abc", "steps": 10}
    agree(World([payload_of(fields), payload_of(fields)]), fields)


def test_first_differing_rank_and_every_field_are_named():
    mine = {"topology": "ring(n=4) abc", "seed": 0, "steps": 10}
    other = {"topology": "star(n=4) def", "seed": 1, "steps": 10}
    with pytest.raises(AgreementError, match=r"job: ranks disagree on the configuration \(first "
                                             r"differing rank: 2\); field 'seed': rank 0 has 0, "
                                             r"rank 2 has 1; field 'topology': rank 0 has "
                                             r"ring\(n=4\) abc, rank 2 has star\(n=4\) def\. "
                                             r"Every rank must build the same"):
        agree(World([payload_of(mine), payload_of(other)]), mine, what="job")


def test_an_exception_on_one_rank_is_raised_on_all():
    def broken():
        raise KeyError("boom")

    failing = payload_of(broken)
    with pytest.raises(AgreementError, match=r"run: start-up check failed on rank\(s\) 1: rank 1: "
                                             r"KeyError: 'boom'"):
        agree(World([failing]), {"steps": 1})
    with pytest.raises(AgreementError, match=r"rank\(s\) 0: rank 0: KeyError") as info:
        agree(Recorder(), broken)
    assert isinstance(info.value.__cause__, KeyError)
