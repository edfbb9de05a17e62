import pytest

from playlist import Playlist, Track

SONG_A = Track("Intro", "Band", 125)
SONG_B = Track("Chorus", "Band", 200)
SONG_C = Track("Outro", "Other", 280)


def test_new_playlists_do_not_share_tracks():
    workout = Playlist("workout")
    chill = Playlist("chill")
    workout.add(SONG_A)
    assert len(chill) == 0


def test_same_track_can_go_on_two_new_playlists():
    first = Playlist("first")
    first.add(SONG_B)
    second = Playlist("second")
    second.add(SONG_B)
    assert second.describe() == "second: 1 track, 3:20"


def test_describe_with_given_tracks():
    road_trip = Playlist("Road trip", [SONG_A, SONG_B, SONG_C])
    assert road_trip.describe() == "Road trip: 3 tracks, 10:05"


def test_duplicate_track_rejected():
    playlist = Playlist("dupes", [SONG_A])
    with pytest.raises(ValueError):
        playlist.add(SONG_A)


def test_remove_and_by_artist():
    playlist = Playlist("mix", [SONG_A, SONG_B, SONG_C])
    assert playlist.remove("Chorus") == SONG_B
    assert playlist.by_artist("Band") == [SONG_A]
    with pytest.raises(KeyError):
        playlist.remove("Chorus")
