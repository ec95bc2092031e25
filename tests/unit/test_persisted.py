"""The automatic persisted queries store stays within its bound, dropping the least used."""

from crm_graphql.web.persisted import DocumentCache


def test_the_store_keeps_at_most_its_size_dropping_the_least_recently_used():
    cache = DocumentCache(max_chars=30)
    for key in "abc":
        cache.put(key, key * 10)
    assert cache.get("a") == "a" * 10  # now the most recently used
    cache.put("d", "d" * 10)
    assert cache.get("b") is None
    assert [cache.get(key) for key in "acd"] == ["a" * 10, "c" * 10, "d" * 10]
    assert cache.chars == 30

    cache.put("huge", "x" * 31)  # larger than the whole store: not kept, nothing evicted
    assert cache.get("huge") is None
    assert cache.chars == 30
