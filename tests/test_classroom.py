"""The class room's store (``langarith.classroom``): codes, keys, bounds, expiry, latest guess."""

from __future__ import annotations

import threading

import pytest

from langarith.classroom import RoomError, Rooms, check_guess


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_codes_are_unguessable_and_the_key_is_separate():
    rooms = Rooms(max_rooms=500)
    opened = [rooms.open() for _ in range(300)]
    codes = {r.code for r in opened}
    keys = {r.key for r in opened}
    assert len(codes) == 300 and len(keys) == 300 and not codes & keys
    assert all(len(c) >= 21 for c in codes | keys)  # 16 random bytes, URL-safe
    r = opened[0]
    assert rooms.check(r.code) is False  # a student's link: in the room, not its teacher
    assert rooms.check(r.code, r.key) is True
    assert rooms.check(r.code, opened[1].key) is False  # another room's key is no key here
    with pytest.raises(RoomError, match="unknown or has expired"):
        rooms.check(r.code[:-1] + ("A" if r.code[-1] != "A" else "B"))
    with pytest.raises(RoomError, match="unknown or has expired"):
        rooms.check(None)


def test_the_latest_guess_counts_once():
    rooms = Rooms()
    r = rooms.open()
    assert rooms.guess(r.code, "s1", "lam|pt", 0.3) == 1
    v = rooms.version(r.code)
    assert rooms.guess(r.code, "s1", "lam|pt", 0.3) == 1
    assert rooms.version(r.code) == v  # the same guess again changes nothing a poll must fetch
    assert rooms.guess(r.code, "s1", "lam|pt", 0.7) == 1
    assert rooms.version(r.code) == v + 1
    assert rooms.guess(r.code, "s2", "lam|pt", 0.5) == 2
    assert rooms.guess(r.code, "s2", "fix|pt", "Yes") == 1
    snap = rooms.snapshot(r.code, "s1")
    assert sorted(snap["guesses"]["lam|pt"]) == [0.5, 0.7]
    assert snap["guesses"]["fix|pt"] == ["yes"]
    assert snap["mine"] == {"lam|pt": 0.7}
    assert "s1" not in str(snap["guesses"])  # tokens never leave the store


def test_bad_guesses_change_nothing():
    rooms = Rooms()
    r = rooms.open()
    for bad in (1.5, -0.1, float("nan"), "maybe", None, "0.3x"):
        with pytest.raises(RoomError):
            rooms.guess(r.code, "s1", "lam|pt", bad)
    with pytest.raises(RoomError, match="a question"):
        rooms.guess(r.code, "s1", "q" * 201, 0.5)
    with pytest.raises(RoomError, match="token"):
        rooms.guess(r.code, "", "lam|pt", 0.5)
    assert rooms.snapshot(r.code)["guesses"] == {} and rooms.version(r.code) == 0
    assert check_guess("0.25") == 0.25 and check_guess(" NO ") == "no"


def test_only_the_teachers_key_reveals():
    rooms = Rooms()
    r, other = rooms.open(), rooms.open()
    rooms.guess(r.code, "s1", "lam|pt", 0.4)
    for key in (None, "", other.key, r.code):
        with pytest.raises(RoomError, match="only the teacher"):
            rooms.reveal(r.code, key, "lam|pt")
    assert rooms.snapshot(r.code)["revealed"] == []
    v = rooms.version(r.code)
    rooms.reveal(r.code, r.key, "lam|pt")
    assert rooms.snapshot(r.code)["revealed"] == ["lam|pt"] and rooms.version(r.code) == v + 1
    rooms.reveal(r.code, r.key, "lam|pt")  # twice: once
    assert rooms.snapshot(r.code)["revealed"] == ["lam|pt"]


def test_rooms_expire_hours_after_their_last_guess():
    clock = Clock()
    rooms = Rooms(clock=clock, ttl=3 * 3600)
    r, idle = rooms.open(), rooms.open()
    clock.t += 2 * 3600
    rooms.guess(r.code, "s1", "lam|pt", 0.5)  # a guess keeps the room open
    clock.t += 2 * 3600
    assert rooms.version(r.code) == 1
    with pytest.raises(RoomError, match="expired"):
        rooms.check(idle.code)  # 4 h without a guess
    assert len(rooms) == 1
    clock.t += 3 * 3600 + 1
    with pytest.raises(RoomError, match="expired"):
        rooms.guess(r.code, "s1", "lam|pt", 0.5)
    assert len(rooms) == 0


def test_bounded_rooms_guesses_and_questions():
    clock = Clock()
    rooms = Rooms(clock=clock, max_rooms=3, max_guesses=5, max_questions=2, ttl=100)
    r = rooms.open()
    rooms.guess(r.code, "s", "q", 0.5)
    first_empty = rooms.open()
    clock.t += 1
    rooms.open()
    rooms.open()  # a full server: the oldest room nobody answered in yields its place
    with pytest.raises(RoomError, match="unknown or has expired"):
        rooms.check(first_empty.code)
    rooms.check(r.code)
    for room in list(rooms._rooms.values()):
        rooms.guess(room.code, "s", "q", 0.5)
    with pytest.raises(RoomError, match="3 rooms open"):
        rooms.open()  # every room has guesses: none yields
    rooms.guess(r.code, "s", "q", "no")  # s's guess in r is replaced, the room still holds 1
    for s in range(5 - 1):  # with s's, 5 guesses
        rooms.guess(r.code, f"s{s}", "lam|pt" if s < 2 else "q", 0.5 if s < 2 else "yes")
    with pytest.raises(RoomError, match="5 guesses"):
        rooms.guess(r.code, "s9", "lam|pt", 0.5)  # a new student once the room is full
    assert rooms.guess(r.code, "s0", "lam|pt", 0.9) == 2  # a student already in may change theirs
    assert sorted(rooms.snapshot(r.code)["guesses"]["q"]) == ["no", "yes", "yes"]
    rooms2 = Rooms(max_questions=2)
    q = rooms2.open()
    rooms2.guess(q.code, "s", "a", 0.1), rooms2.guess(q.code, "s", "b", 0.1)
    with pytest.raises(RoomError, match="2 questions"):
        rooms2.guess(q.code, "s", "c", 0.1)
    clock.t += 101  # expired rooms free their places
    assert rooms.open().code


def test_thread_safe_under_many_students():
    rooms = Rooms(max_guesses=10_000)
    r = rooms.open()

    def student(i):
        for j in range(50):
            rooms.guess(r.code, f"s{i}", "lam|pt", j / 50)

    threads = [threading.Thread(target=student, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = rooms.snapshot(r.code)
    assert len(snap["guesses"]["lam|pt"]) == 20
    assert set(snap["guesses"]["lam|pt"]) == {0.98}
    assert snap["version"] == 20 * 50
