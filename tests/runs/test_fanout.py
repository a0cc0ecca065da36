from include.beteiligte_sync.fanout import API_CONCURRENCY, split_into_units


def test_few_candidates_get_one_unit_per_entity_labelled_by_id():
    units = split_into_units(["a", "b", "c"], max_units=64)
    assert [u["entity_ids"] for u in units] == [["a"], ["b"], ["c"]]
    assert units[0]["label"] == "entity a"


def test_many_candidates_are_batched_within_the_bound():
    ids = [f"e{i}" for i in range(2000)]
    units = split_into_units(ids, max_units=64)
    assert len(units) <= 64
    assert sorted(i for u in units for i in u["entity_ids"]) == sorted(ids)
    assert units[0]["label"].startswith("batch 1/")


def test_batches_are_dealt_round_robin_in_order_and_even():
    ids = [f"e{i}" for i in range(10)]
    units = split_into_units(ids, max_units=4, batches=3)
    assert [u["entity_ids"] for u in units] == [
        ["e0", "e3", "e6", "e9"],
        ["e1", "e4", "e7"],
        ["e2", "e5", "e8"],
    ]
    assert units[0]["label"] == "batch 1/3 (4 entities)"


def test_one_batch_per_pool_slot_beyond_the_per_entity_bound():
    ids = [f"e{i}" for i in range(1000)]
    units = split_into_units(ids, max_units=16, batches=API_CONCURRENCY)
    assert len(units) == API_CONCURRENCY
    assert {len(u["entity_ids"]) for u in units} == {250}
    assert len(split_into_units(ids[:16], max_units=16, batches=API_CONCURRENCY)) == 16


def test_duplicates_are_synced_once_and_empty_input_gives_no_units():
    assert split_into_units([]) == []
    units = split_into_units(["a", "a", "b"], max_units=10)
    assert [u["entity_ids"] for u in units] == [["a"], ["b"]]


def test_batch_count_matches_the_pool_slots_setup_creates():
    from include.tools.setup_airflow import POOLS

    assert POOLS["advoware_api"][0] == API_CONCURRENCY
    assert POOLS["espocrm_api"][0] == API_CONCURRENCY
