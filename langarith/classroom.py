"""A class room for peer instruction: students commit guesses to the tour's questions, the teacher
sees how many answered and how, and reveals the class's guesses to every student at once.

Pure Python, in memory, thread-safe. Nothing here knows a name: a guess is keyed by an opaque
token of the student's page, and a student's latest guess to a question is the one that counts.
Everything is bounded (rooms, guesses a room, questions a room) and a room expires some hours
after its last guess, so that a flood of requests cannot grow the server.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

MAX_ROOMS = 200
MAX_GUESSES = 400  # a room's (student, question) guesses: a large class, ten questions each
MAX_QUESTIONS = 12
TTL_S = 4 * 3600.0  # a room lives this long after its last guess (or its opening)
MAX_ID = 200  # characters of a question id or a student's token
YES_NO = ("yes", "no")


class RoomError(ValueError):
    """A bad or expired room code, a wrong key, a full room: one line a page can show."""


@dataclass
class Room:
    code: str  # in the students' link
    key: str  # in the teacher's link only: opening the reveal needs it
    touched: float
    guesses: dict[str, dict[str, float | str]] = field(default_factory=dict)  # question → token → guess
    revealed: list[str] = field(default_factory=list)  # questions, in the order the teacher revealed them
    version: int = 0  # bumped by every change: a poll that sees the same number has nothing new

    def n_guesses(self) -> int:
        return sum(len(g) for g in self.guesses.values())


def check_guess(value) -> float | str:
    """A λ in [0, 1] or "yes"/"no"; anything else is refused with the reason."""
    if isinstance(value, str) and value.strip().lower() in YES_NO:
        return value.strip().lower()
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise RoomError(f"a guess is a λ between 0 and 1, or yes or no; got {value!r}") from None
    if not math.isfinite(x) or not 0.0 <= x <= 1.0:
        raise RoomError(f"a guessed λ must lie between 0 and 1; got {value!r}")
    return round(x, 4)


def _check_id(what: str, value) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise RoomError(f"{what} must be text of 1 to {MAX_ID} characters")
    return value


class Rooms:
    """The server's rooms. ``clock``: seconds, monotonic (a test passes its own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_rooms: int = MAX_ROOMS,
                 max_guesses: int = MAX_GUESSES, max_questions: int = MAX_QUESTIONS, ttl: float = TTL_S):
        self.clock, self.ttl = clock, ttl
        self.max_rooms, self.max_guesses, self.max_questions = max_rooms, max_guesses, max_questions
        self._rooms: dict[str, Room] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._rooms)

    def _expire(self) -> None:
        now = self.clock()
        for code in [c for c, r in self._rooms.items() if now - r.touched > self.ttl]:
            del self._rooms[code]

    def _room(self, code) -> Room:
        room = self._rooms.get(code) if isinstance(code, str) else None
        if room is None or self.clock() - room.touched > self.ttl:
            self._rooms.pop(code, None) if isinstance(code, str) else None
            raise RoomError("this room code is unknown or has expired: ask the teacher for a new link")
        return room

    def open(self) -> Room:
        """A new room: a random code for the students and a second, secret key for the teacher
        (each 128 bits from ``secrets``: not guessable, not derivable from each other)."""
        with self._lock:
            self._expire()
            if len(self._rooms) >= self.max_rooms:  # a room nobody answered in yields its place
                empty = [r for r in self._rooms.values() if not r.guesses]
                if empty:
                    del self._rooms[min(empty, key=lambda r: r.touched).code]
            if len(self._rooms) >= self.max_rooms:
                raise RoomError(f"this server has {self.max_rooms} rooms open, its most; "
                                "try again later (rooms close hours after their last guess)")
            code = secrets.token_urlsafe(16)
            room = Room(code=code, key=secrets.token_urlsafe(16), touched=self.clock())
            self._rooms[code] = room
            return room

    def check(self, code, key=None) -> bool:
        """Whether ``code`` is an open room (else RoomError); True when ``key`` is its teacher's."""
        with self._lock:
            room = self._room(code)
            return key is not None and secrets.compare_digest(str(key), room.key)

    def guess(self, code, token, question, value) -> int:
        """A student's guess (their latest replaces their earlier one): how many have answered
        this question now."""
        value = check_guess(value)
        _check_id("a student's token", token)
        _check_id("a question", question)
        with self._lock:
            room = self._room(code)
            answers = room.guesses.get(question)
            if answers is None:
                if len(room.guesses) >= self.max_questions:
                    raise RoomError(f"this room already has {self.max_questions} questions, its most")
                answers = {}
            if token not in answers and room.n_guesses() >= self.max_guesses:
                raise RoomError(f"this room already holds {self.max_guesses} guesses, its most")
            room.guesses[question] = answers
            if answers.get(token) != value:
                answers[token] = value
                room.version += 1
            room.touched = self.clock()
            return len(answers)

    def reveal(self, code, key, question) -> None:
        """The teacher's reveal of a question's guesses to every student (needs the key)."""
        _check_id("a question", question)
        with self._lock:
            room = self._room(code)
            if not secrets.compare_digest(str(key or ""), room.key):
                raise RoomError("only the teacher's link can reveal the answers")
            if question not in room.revealed:
                room.revealed.append(question)
                room.version += 1

    def version(self, code) -> int:
        """The room's change counter: what a poll compares first (no copy, no sort)."""
        with self._lock:
            return self._room(code).version

    def snapshot(self, code, token=None) -> dict:
        """What a page shows: every question's guesses (values only, no tokens), which are
        revealed, and ``token``'s own guesses."""
        with self._lock:
            room = self._room(code)
            return {"version": room.version,
                    "guesses": {q: list(g.values()) for q, g in room.guesses.items()},
                    "revealed": list(room.revealed),
                    "mine": {q: g[token] for q, g in room.guesses.items() if token in g}}


def new_token() -> str:
    """A student's page's own random token (what keys their guesses)."""
    return secrets.token_urlsafe(12)
