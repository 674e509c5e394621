"""Predict, then reveal; and a class room for it (peer instruction).

Two of the tour's lessons are asked before the page shows them: "which λ gives the lowest
masked-LM loss on held-out text?" (a guessed λ; the held-out curve is hidden until the student
answers) and "will the merge get this dev item right where A gets it wrong?" (yes or no). The
answers come from the bundle's stored results. Out of a room the page answers at once, the guess
beside the measured answer in one sentence; a student may skip.

In a room (``?room=CODE``, the teacher's link adds ``&key=KEY``) the reveal is the teacher's: a
student who commits sees that their guess is in and how many have answered; the teacher's page
shows the guesses per question as they come and, when the teacher chooses, reveals the class's
guesses (a histogram) beside the measured answer and each student's own guess on every page at
once. Rooms live in ``classroom.Rooms``; every room event is CPU-only. A page polls its room with
a timer (only while in one): a poll compares the room's change counter and answers ``gr.skip()``
when nothing changed, so a hundred polling students cost a counter read each.
"""

from __future__ import annotations

import functools
import statistics
import zlib

import gradio as gr
import plotly.graph_objects as go

from .. import classroom, results
from ..classroom import RoomError
from ..loading import InputError
from ..model import LanguageStack
from .common import (BAD_INPUT, CPU_LANE, LINEAR, PRIVATE, Controls, Method, class_query, event, page_kind,
                     page_task, readable, spans_of)

ROOMS = classroom.Rooms()  # this server's rooms (one process serves every visitor)
POLL_S = 3.0  # a room's pages ask for news this often: a reveal reaches a class within seconds
NO_ROOM = "the page works without the room"


# --- the questions: what is asked, and the measured answer from the stored results --------------


def _dev_lambda(stack: LanguageStack, target: str, a: str, b: str, task_name: str | None) -> float:
    """The λ the tour's merge step shows: the dev set's choice, else 0.5."""
    kind = page_kind(stack, task_name)
    lam = kind.dev_lambda(stack, target, a, b, page_task(stack, task_name)) if kind else None
    return 0.5 if lam is None else float(lam)


def _pick(rows: list, salt: str):
    """One item of ``rows``, the same on every page for the same pair (a class sees one item),
    not always the merge's best win (then the answer would always be yes)."""
    return rows[zlib.crc32(salt.encode()) % len(rows)] if rows else None


@functools.lru_cache(maxsize=256)
def question(stack: LanguageStack, qid: str) -> dict:
    """A question from its id (``lam|target|b`` or ``fix|target|b|task|λ|item``): its wording
    and the measured answer. Ids carry what is needed, so that a room's pages agree on a
    question and a reveal can be answered on any page."""
    kind, target, b, *rest = qid.split("|", 5)
    if kind == "lam":
        curve = results.mlm_summary(stack, target, b)
        if curve is None:
            raise InputError(f"no precomputed held-out masked-LM curve for {target} with B = {b}: "
                             "this pair has no λ question")
        loss = {p["lam"]: p["loss"] for p in curve["points"]}
        best = curve["best_lam"]
        return dict(id=qid, kind="lam", answer=best,
                    label=f"lowest-loss λ ({target}, B = {b})",
                    ask=(f"**Which λ will give the lowest masked-LM loss on held-out {target} text?** "
                         f"(λ = 1: A = {curve['a']} alone; λ = 0: B = {b} alone.) The curve is hidden "
                         "until you answer."),
                    measured=(f"the held-out curve's lowest loss is at λ = {best:g} ({loss[best]:.3f}, "
                              f"against A {loss[1.0]:.3f} and B {loss[0.0]:.3f}; {curve['n_texts']} "
                              "paragraphs no adapter was trained on)"))
    if kind != "fix" or len(rest) != 3:
        raise InputError(f"unknown question {qid!r}")
    task_name, lam_s, key = rest
    lam = float(lam_s)
    say = readable(stack, task_name or None)
    k = page_kind(stack, task_name or None)
    if k is not None and k.name == "tagging":
        from .. import ner

        row = next((r for r in ner.flips(stack, target, lam, task_name or None, limit=10_000)
                    if r["key"] == key), None)
        if row is None:
            raise InputError(f"the stored predictions have no item {key!r} for {target}")
        gold, a_tags, m_tags = row["gold"], row["tags"]["A"], row["tags"]["merged"]
        text, right = " ".join(row["words"]), m_tags == gold
        from .. import tasks

        shown = (f"gold names: *{spans_of(row['words'], gold, say, none='no names')}*; A = {tasks.merge_pair(stack, target, b)[0]} alone "
                 f"tags: *{spans_of(row['words'], a_tags, say, none='no names')}*")
        merged = f"tags *{spans_of(row['words'], m_tags, say, none='no names')}*"
    else:
        f = results.flips(stack, target, b, lam, "dev", limit=10_000)
        row = next((r for r in f["rows"] if r["key"] == key), None)
        if row is None:
            raise InputError(f"the stored predictions have no dev item {key!r} for {target}")
        text, right = f["texts"][key], row["merged"] == row["gold"]
        shown = f"gold label: **{say(row['gold'])}**; A = {f['a']} alone says **{say(row['A'])}**"
        merged = f"says **{say(row['merged'])}** (gold {say(row['gold'])})"
    return dict(id=qid, kind="fix", answer="yes" if right else "no", text=text,
                label=f"merge fixes the item ({target}, λ = {lam:g})",
                ask=(f"**Will the merge at λ = {lam:g} get this dev item right where A gets it wrong?**\n\n"
                     f"> {text[:400]}\n\n{shown}."),
                measured=(f"the merge at λ = {lam:g} {merged}: "
                          + ("**yes**, it gets it right where A does not" if right else
                             "**no**, it does not fix A's mistake")))


def ask_id(stack: LanguageStack, kind: str, target: str, source: str | None, task_name: str | None) -> str:
    """The id of this pair's question of ``kind`` (``lam`` or ``fix``)."""
    from .. import tasks

    a, b = tasks.merge_pair(stack, target, source)
    if kind == "lam":
        return f"lam|{target}|{b}"
    lam = _dev_lambda(stack, target, a, b, task_name)
    task = page_task(stack, task_name) or ""
    k = page_kind(stack, task_name)
    if k is not None and k.name == "tagging":
        from .. import ner

        lam = round(lam, 1)  # the tagging task's stored predictions are on a 0.1 grid
        rows = [r for r in ner.flips(stack, target, lam, task or None, limit=10_000)
                if r["tags"]["A"] != r["gold"]]
    elif k is not None and k.name == "classification":
        f = results.flips(stack, target, b, lam, "dev", limit=10_000)
        lam = f["lam"]
        rows = [r for r in f["rows"] if r["A"] != r["gold"]]
    else:
        raise InputError("this task has no stored predictions to ask about")
    row = _pick(rows, f"{target}|{b}|{task}")
    if row is None:
        raise InputError(f"no {target} item here that A gets wrong and the merge labels differently")
    return f"fix|{target}|{b}|{task}|{lam:g}|{row['key']}"


def _guess_words(q: dict, g) -> str:
    return f"λ = {g:g}" if q["kind"] == "lam" else str(g)


def answer_line(q: dict, mine) -> str:
    """The guess beside the measured answer, in one sentence."""
    if mine is None:
        return f"Measured: {q['measured']}."
    if q["kind"] == "lam":
        off = abs(float(mine) - q["answer"])
        how = "right on it" if off < 1e-9 else f"{off:.2f} away"
    else:
        how = "right" if mine == q["answer"] else "not this time"
    return f"You guessed {_guess_words(q, mine)} ({how}); {q['measured']}."


def guesses_figure(q: dict, guesses: list, mine=None) -> go.Figure:
    """The class's guesses as a histogram, the measured answer as a line (λ) or a marked bar."""
    n = len(guesses)
    if q["kind"] == "lam":
        fig = go.Figure(go.Histogram(x=guesses, xbins=dict(start=-0.025, end=1.025, size=0.05),
                                     marker_color="#7f7f7f", name="the class's guesses"))
        fig.add_vline(x=q["answer"], line=dict(color="black", width=3),
                      annotation_text=f"measured: λ = {q['answer']:g}")
        if mine is not None:
            fig.add_vline(x=float(mine), line=dict(color="#d62728", dash="dot"), annotation_text="you",
                          annotation_position="bottom right")
        fig.update_xaxes(title="guessed λ", range=[-0.05, 1.05])
    else:
        counts = [sum(g == v for g in guesses) for v in classroom.YES_NO]
        colors = ["black" if v == q["answer"] else "#bbbbbb" for v in classroom.YES_NO]
        fig = go.Figure(go.Bar(x=[f"{v}{' (measured)' if v == q['answer'] else ''}"
                                  f"{' ← you' if v == mine else ''}" for v in classroom.YES_NO],
                               y=counts, marker_color=colors))
    fig.update_layout(title=dict(text=f"The class's guesses (n = {n})", font=dict(size=13)), height=230,
                      margin=dict(l=40, r=10, t=40, b=40), showlegend=False, yaxis=dict(title="students"))
    return fig


def distribution_line(q: dict, guesses: list, revealed: bool) -> str:
    """The teacher's one line for a question: how many answered and how."""
    n = len(guesses)
    if not n:
        how = "no guesses yet"
    elif q["kind"] == "lam":
        xs = sorted(float(g) for g in guesses)
        how = f"λ from {xs[0]:g} to {xs[-1]:g}, median {statistics.median(xs):g}"
    else:
        how = " · ".join(f"{v} {sum(g == v for g in guesses)}" for v in classroom.YES_NO)
    return f"- **{q['label']}**: {n} answered ({how}){' · revealed' if revealed else ''}"


# --- handlers -------------------------------------------------------------------------------------


def _curve(visible: bool) -> tuple:
    """The first screen's held-out curve and its line (which names the best λ): hidden while the
    λ question waits for its answer."""
    return (gr.update(visible=visible),) * 2


def on_ask(stack: LanguageStack, kind: str, target: str, source: str | None, task_name: str | None,
           code: str):
    """Open a question: its wording, the right guess control, the curve hidden for the λ one.
    (The room's counter is forgotten: the next poll shows this question's guesses.)"""
    try:
        qid = ask_id(stack, kind, target, source, task_name)
        q = question(stack, qid)
    except BAD_INPUT as e:
        return (f"*No question here: {e}*", "", gr.update(visible=False), gr.update(visible=False),
                gr.update(visible=False), "", gr.update(visible=False), None, *_curve(True))
    how = (" In the room, the teacher reveals the answer." if code else
           " Commit your guess (or skip) to see the measured answer.")
    return (q["ask"] + how, qid, gr.update(visible=q["kind"] == "lam", value=0.5),
            gr.update(visible=q["kind"] == "fix", value=None), gr.update(visible=True), "",
            gr.update(visible=False), None, *_curve(q["kind"] != "lam"))


def on_ask_lam(stack: LanguageStack, target: str, source: str | None, task_name: str | None, code: str):
    return on_ask(stack, "lam", target, source, task_name, code)


def on_ask_fix(stack: LanguageStack, target: str, source: str | None, task_name: str | None, code: str):
    return on_ask(stack, "fix", target, source, task_name, code)


def on_guess(stack: LanguageStack, code: str, token: str, qid: str, lam_guess, yes_no):
    """A committed guess. Out of a room: the answer at once; in one: the guess is in, and how
    many have answered (the teacher reveals). A bad guess or room changes nothing."""
    keep = gr.update()
    try:
        q = question(stack, qid)
    except (BAD_INPUT + (ValueError,)):
        raise gr.Error("open a question first (the buttons under the tour)") from None
    mine = lam_guess if q["kind"] == "lam" else yes_no
    if mine is None or mine == "":
        raise gr.Error("choose yes or no first" if q["kind"] == "fix" else "set your guessed λ first")
    try:
        mine = classroom.check_guess(mine)
        if not code:
            return answer_line(q, mine), keep, keep, gr.update(visible=False), *_curve(True)
        n = ROOMS.guess(code, token, qid, mine)
    except RoomError as e:
        raise gr.Error(str(e)) from None
    return (f"Your guess is in ({_guess_words(q, mine)}). The teacher reveals the answer.", keep,
            f"**Room:** {n} answered this question (yours is in).", keep, keep, keep)  # as a poll says it


def on_skip():
    return "Skipped.", gr.update(visible=False), *_curve(True)


def on_poll(stack: LanguageStack, code: str, key: str, token: str, qid: str, seen):
    """A room's news for this page, or ``gr.skip()`` everywhere when its counter has not moved.
    Outputs: room line, answer, histogram, the teacher's distribution, the counter, the curve's
    visibility, the timer."""
    skip = (gr.skip(),) * 8
    if not code:
        return skip
    try:
        version = ROOMS.version(code)
    except RoomError as e:
        return (f"**Room closed:** {e}; {NO_ROOM}.", *skip[:6], gr.Timer(active=False))
    if seen is not None and int(seen) == version:
        return skip
    snap = ROOMS.snapshot(code, token)
    teacher = bool(key) and ROOMS.check(code, key)
    here = snap["guesses"].get(qid, [])
    who = "Room (teacher)" if teacher else "Room"
    if qid:
        line = f"**{who}:** {len(here)} answered this question" + (" (yours is in)." if qid in snap["mine"] else ".")
    else:
        line = (f"**{who}:** open a question (the buttons under the tour) to watch the class answer it."
                if teacher else "**Room:** you are in the class room; open the question the teacher asks "
                "(the buttons under the tour).")
    answer, hist, curve = gr.skip(), gr.skip(), (gr.skip(),) * 2
    latest = snap["revealed"][-1] if snap["revealed"] else None
    shown = (qid or latest) if teacher else latest  # the teacher watches the open question live
    if shown:
        try:
            q = question(stack, shown)
        except BAD_INPUT:
            q = None
        if q is not None:
            revealed = shown in snap["revealed"]
            guesses, mine = snap["guesses"].get(shown, []), snap["mine"].get(shown)
            hist = gr.update(value=guesses_figure(q, guesses, mine if revealed else None), visible=True)
            if revealed:
                answer = (f"**Revealed:** {answer_line(q, mine)} The class: {len(guesses)} guesses "
                          "(the histogram).")
                curve = _curve(True)
    dist = gr.skip()
    if teacher:
        rows = []
        for q_id, guesses in snap["guesses"].items():
            try:
                rows.append(distribution_line(question(stack, q_id), guesses, q_id in snap["revealed"]))
            except BAD_INPUT:
                continue
        dist = "**The class's answers, live:**\n\n" + ("\n".join(rows) or "no guesses yet")
    return line, answer, hist, dist, version, *curve, gr.skip()


def on_reveal(stack: LanguageStack, code: str, key: str, qid: str):
    """The teacher's reveal of the question open on their page (else the latest one answered)."""
    try:
        snap = ROOMS.snapshot(code)
        shown = qid or next(reversed(snap["guesses"]), "")
        if not shown:
            raise RoomError("no question has guesses yet: open one and let the class answer")
        ROOMS.reveal(code, key, shown)
    except RoomError as e:
        raise gr.Error(str(e)) from None
    return "**Room:** revealed to the class."


def on_room_link(stack: LanguageStack, request: gr.Request):
    """A page's room from its link (``?room=CODE``, the teacher's ``&key=KEY``) and the page's own
    random token (what keys its guesses: no name is asked or kept). A bad or expired code: one
    line, and the page works without the room."""
    params = dict(request.query_params) if request else {}
    token = classroom.new_token()
    code, key = params.get("room") or "", params.get("key") or ""
    hidden = (gr.update(visible=False),) * 3  # the guess row, the histogram, the reveal button
    off = ("", "", token, "", gr.Timer(active=False), *hidden)
    if not code:
        return off
    try:
        teacher = ROOMS.check(code, key or None)
    except RoomError as e:
        return ("", "", token, f"**Room:** {e}; {NO_ROOM}.", gr.Timer(active=False), *hidden)
    line = ("**Room (teacher):** the class's answers appear below as they come; reveal when ready."
            if teacher else
            ("**Room:** you are in the class room" + (" (the key is not this room's: as a student)" if key else "")
             + ". Answer the teacher's question; the teacher reveals the answers."))
    return code, key if teacher else "", token, line, gr.Timer(active=True), *hidden[:2], gr.update(visible=teacher)


def on_open_room(stack: LanguageStack, target, source, lam, task_name, text, step,
                 method: Method = LINEAR, request: gr.Request = None):
    """"Open a room for my class": a new room; the students' link (the class link and the room
    code) and the teacher's (with the key); this page becomes the teacher's."""
    try:
        _, query = class_query(stack, target, source, lam, task_name, text, step, method)
        room = ROOMS.open()
    except RoomError as e:
        raise gr.Error(str(e)) from None
    except BAD_INPUT as e:
        raise gr.Error(str(e)) from None
    page = (request.headers.get("referer") or "").split("?")[0] if request else ""
    students = f"{page}{query}&room={room.code}"
    note = (f"**Room open.** Students' link:\n\n`{students}`\n\nYour (teacher's) link — keep it to "
            f"yourself, it reveals the answers:\n\n`{students}&key={room.key}`\n\nThis page is the "
            "teacher's now. The room closes hours after its last guess.")
    return (note, room.code, room.key, "**Room (teacher):** the class's answers appear below as they come.",
            gr.Timer(active=True), gr.update(visible=True), None)


def on_room_open(stack: LanguageStack):
    """A new room's code and teacher's key, for a script (the public ``/room_open``): what the
    page's button opens, without the links. Bounded like every room."""
    try:
        room = ROOMS.open()
    except RoomError as e:
        raise gr.Error(str(e)) from None
    return room.code, room.key


# --- layout and events ----------------------------------------------------------------------------


def layout_questions() -> dict:
    """Under the tour: the two questions, the guess, the answer, the room's lines."""
    with gr.Group(elem_id="questions"):
        with gr.Row():
            ask_lam = gr.Button("? Which λ: lowest loss", size="sm", elem_id="ask-lam", min_width=60)
            ask_fix = gr.Button("? Will the merge fix it", size="sm", elem_id="ask-fix", min_width=60)
        asked = gr.Markdown(elem_id="question")
        # Laid out visible and hidden by the page's load (``on_room_link``): in Gradio 6.17.3 a
        # component laid out hidden that is sent ``visible=False`` never shows again.
        with gr.Row(elem_id="guess-row") as guess_row:
            lam_guess = gr.Slider(0, 1, value=0.5, step=0.05, label="your guess: λ", elem_id="guess-lam")
            yes_no = gr.Radio(list(classroom.YES_NO), label="your guess", elem_id="guess-yes")
            with gr.Column(min_width=80, scale=0):
                commit = gr.Button("Commit my guess", variant="primary", size="sm", elem_id="commit")
                skip = gr.Button("Skip", size="sm", elem_id="skip")
        answer = gr.Markdown(elem_id="answer")
        hist = gr.Plot(elem_id="class-guesses", label="the class's guesses")
        room_line = gr.Markdown(elem_id="room-line")
        reveal = gr.Button("Reveal to the class", size="sm", elem_id="reveal")
        dist = gr.Markdown(elem_id="room-dist")
    # What a page holds of its room: plain values (hidden), so the public poll and guess take them
    # as arguments; the question's answer never leaves the server (it is recomputed from its id).
    code, key, token, qid = (gr.Textbox(visible=False) for _ in range(4))
    api_open = gr.Button(visible=False)  # the public /room_open
    seen = gr.Number(visible=False, precision=0)
    timer = gr.Timer(POLL_S, active=False)
    return dict(ask_lam=ask_lam, ask_fix=ask_fix, asked=asked, guess_row=guess_row, lam_guess=lam_guess,
                yes_no=yes_no, commit=commit, skip=skip, answer=answer, hist=hist, room_line=room_line,
                reveal=reveal, dist=dist, code=code, key=key, token=token, qid=qid,
                seen=seen, timer=timer, api_open=api_open)


def layout_open() -> dict:
    """In Keep & share, beside "Link for my class": open a room."""
    open_room = gr.Button("Open a room for my class (students guess, you reveal)", elem_id="open-room")
    open_note = gr.Markdown(elem_id="open-room-note")
    return dict(open_room=open_room, open_note=open_note)


def wire(stack: LanguageStack, c: Controls, p: dict, opener: dict, curve: list, demo: gr.Blocks) -> None:
    """``curve``: the first screen's held-out curve and its line (hidden while the λ question is
    open). Every event here is CPU-only."""
    for kind, fn in (("lam", on_ask_lam), ("fix", on_ask_fix)):
        p[f"ask_{kind}"].click(
            **event(fn, [c.target, c.source, c.task, p["code"]],
                    [p["asked"], p["qid"], p["lam_guess"], p["yes_no"], p["guess_row"], p["answer"], p["hist"],
                     p["seen"], *curve]),
            api_name=f"ask_{kind}", **PRIVATE)
    p["commit"].click(**event(on_guess, [p["code"], p["token"], p["qid"], p["lam_guess"], p["yes_no"]],
                              [p["answer"], p["hist"], p["room_line"], p["guess_row"], *curve]),
                      api_name="room_guess")
    p["skip"].click(on_skip, None, [p["answer"], p["guess_row"], *curve], api_name="skip_question",
                    **CPU_LANE, **PRIVATE)
    p["timer"].tick(**event(on_poll, [p["code"], p["key"], p["token"], p["qid"], p["seen"]],
                            [p["room_line"], p["answer"], p["hist"], p["dist"], p["seen"], *curve,
                             p["timer"]]),
                    api_name="room_poll", show_progress="hidden")
    p["reveal"].click(**event(on_reveal, [p["code"], p["key"], p["qid"]], p["room_line"]),
                      api_name="room_reveal", **PRIVATE)
    demo.load(**event(on_room_link, None, [p["code"], p["key"], p["token"], p["room_line"], p["timer"],
                                           p["guess_row"], p["hist"], p["reveal"]]),
              api_name="room_from_link", **PRIVATE)
    p["api_open"].click(**event(on_room_open, None, [p["code"], p["key"]]), api_name="room_open")
    opener["open_room"].click(
        **event(on_open_room, [*c.pair, c.task, c.text, c.step, *c.method.inputs],
                [opener["open_note"], p["code"], p["key"], p["room_line"], p["timer"], p["reveal"], p["seen"]]),
        api_name="open_room", **PRIVATE)
