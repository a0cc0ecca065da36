from include.beteiligte_sync.fanout import split_into_units


def test_few_candidates_get_one_unit_per_entity_labelled_by_id():
    units = split_into_units(["a", "b", "c"], max_units=64)
    assert [u["entity_ids"] for u in units] == [["a"], ["b"], ["c"]]
    assert units[0]["label"] == "entity a"


def test_many_candidates_are_batched_within_the_bound():
    ids = [f"e{i}" for i in range(2000)]
    units = split_into_units(ids, max_units=64)
    assert len(units) <= 64
    assert [i for u in units for i in u["entity_ids"]] == ids
    assert units[0]["label"].startswith("batch 1/")


def test_duplicates_are_synced_once_and_empty_input_gives_no_units():
    assert split_into_units([]) == []
    units = split_into_units(["a", "a", "b"], max_units=10)
    assert [u["entity_ids"] for u in units] == [["a"], ["b"]]
