"""lensflow.expertlens.naming: the one builder and parser of the "jaccard@<tau>" measure names and
of the "source_type|model|dataset" similarity-source labels."""

import pytest

from lensflow.expertlens.naming import (COSINE, headline_measure, jaccard_measure, jaccard_tau, measure_key,
                                        parse_source_label, source_label)


@pytest.mark.parametrize("tau, name", [(0.5, "jaccard@0.5"), (0.6, "jaccard@0.6"), (1, "jaccard@1"),
                                       (0.25, "jaccard@0.25"), (0.1, "jaccard@0.1")])
def test_measure_names_round_trip(tau, name):
    assert jaccard_measure(tau) == name
    assert jaccard_tau(name) == pytest.approx(tau)


def test_other_measures_have_no_tau():
    for name in [COSINE, "glove", "jaccard@", "jaccard@x", "jaccard0.5"]:
        assert jaccard_tau(name) is None


def test_headline_is_the_lowest_tau():
    assert headline_measure([0.7, 0.5, 0.6]) == "jaccard@0.5"


def test_measures_sort_by_tau_then_cosine_then_by_name():
    names = ["zeta", COSINE, "jaccard@0.7", "glove", "jaccard@0.5", "jaccard@0.6"]
    assert sorted(names, key=measure_key) == ["jaccard@0.5", "jaccard@0.6", "jaccard@0.7", COSINE, "glove", "zeta"]


@pytest.mark.parametrize("parts, label", [(("neurons", "pythia-70m", "onesec"), "neurons|pythia-70m|onesec"),
                                          (("baseline", "", ""), "baseline||"),
                                          (("baseline", "", "onesec"), "baseline||onesec"),
                                          (("baseline", "pythia-70m@step1", ""), "baseline|pythia-70m@step1|")])
def test_source_labels_round_trip(parts, label):
    assert source_label(*parts) == label
    assert parse_source_label(label) == parts


def test_source_labels_refuse_what_they_cannot_read_back():
    with pytest.raises(ValueError):
        source_label("neurons", "a|b", "d")
    with pytest.raises(ValueError):
        parse_source_label("neurons|m")
