from leaderboard import Entry, best_per_player, rank, table, top


def test_highest_score_first():
    entries = [Entry("ana", 50, 30.0), Entry("ben", 90, 45.0), Entry("cat", 70, 20.0)]
    assert [e.player for e in rank(entries)] == ["ben", "cat", "ana"]


def test_faster_player_wins_a_tie():
    entries = [Entry("slow", 80, 95.5), Entry("fast", 80, 41.0), Entry("low", 10, 5.0)]
    assert top(entries) == ["fast", "slow", "low"]


def test_full_tie_listed_by_name():
    entries = [Entry("zoe", 60, 30.0), Entry("adam", 60, 30.0), Entry("mia", 60, 30.0)]
    assert top(entries) == ["adam", "mia", "zoe"]


def test_top_n():
    entries = [Entry(name, score, 10.0) for name, score in [("a", 1), ("b", 3), ("c", 2)]]
    assert top(entries, 2) == ["b", "c"]


def test_best_attempt_per_player():
    entries = [Entry("ana", 40, 10.0), Entry("ana", 70, 50.0), Entry("ben", 60, 12.0)]
    assert best_per_player(entries) == [Entry("ana", 70, 50.0), Entry("ben", 60, 12.0)]


def test_best_attempt_prefers_faster_run():
    entries = [Entry("ana", 70, 50.0), Entry("ana", 70, 35.0), Entry("ben", 60, 12.0)]
    assert best_per_player(entries)[0] == Entry("ana", 70, 35.0)


def test_table_header():
    assert table([]).split("\n")[0].split() == ["#", "player", "score", "time"]
