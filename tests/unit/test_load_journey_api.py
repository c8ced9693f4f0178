"""The journey API: weighted tasks, on_start/on_stop, plain functions, default request names,
expected statuses."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from pytest_minigram import Journey as TopJourney
from pytest_minigram import task as top_task
from pytest_minigram.load import (
    Closed,
    Journey,
    Open,
    Result,
    VirtualUser,
    as_journey,
    default_name,
    run,
    task,
)
from pytest_minigram.load.testserver import ServerProcess
from pytest_minigram.slo import evaluate


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess() as srv:
        yield srv


def test_reexported_from_the_package() -> None:
    assert TopJourney is Journey and top_task is task


# --- weighted tasks --------------------------------------------------------------------


def test_the_task_mix_follows_the_weights_and_is_reproducible() -> None:
    def play(seed: int) -> Counter[str]:
        picks: Counter[str] = Counter()

        class Mix(Journey):
            @task(3)
            async def browse(self, user: VirtualUser) -> None:
                picks["browse"] += 1

            @task(1)
            async def buy(self, user: VirtualUser) -> None:
                picks["buy"] += 1

            @task
            async def look(self, user: VirtualUser) -> None:
                picks["look"] += 1

        # no requests: the target is never contacted
        result = run(Closed(users=4, duration=30.0, iterations=2500), Mix, "http://127.0.0.1:9",
                     seed=seed)
        assert result.iterations == 10_000 and result.count == 0
        return picks

    picks = play(7)
    n = sum(picks.values())
    for name, weight in (("browse", 3 / 5), ("buy", 1 / 5), ("look", 1 / 5)):
        sd = (n * weight * (1 - weight)) ** 0.5
        assert abs(picks[name] - n * weight) < 5 * sd, (name, picks)
    assert play(7) == picks  # the users' seeded rngs draw the same tasks again
    assert play(8) != picks


def test_functional_form_with_tasks_and_hooks() -> None:
    seen: list[str] = []

    async def a(user: VirtualUser) -> None:
        seen.append("a")

    async def b(user: VirtualUser) -> None:
        seen.append("b")

    async def start(user: VirtualUser) -> None:
        seen.append("start")

    async def stop(user: VirtualUser) -> None:
        seen.append("stop")

    j = Journey("fn", tasks={a: 1, b: 4}, on_start=start, on_stop=stop, think_time=0.0)
    assert [w for _, w in j.tasks] == [1.0, 4.0]
    result = run(Closed(users=1, duration=30.0, iterations=200), j, "http://127.0.0.1:9")
    assert result.iterations == 200
    assert seen[0] == "start" and seen[-1] == "stop" and len(seen) == 202
    assert 120 < seen.count("b") < 200


def test_invalid_journeys_are_refused_with_the_reason() -> None:
    async def a(user: VirtualUser) -> None:
        return None

    with pytest.raises(ValueError, match="weight must be a finite number > 0"):
        Journey("x", tasks={a: 0})
    with pytest.raises(ValueError, match="weight"):
        task(-1)
    with pytest.raises(TypeError, match="iteration or tasks, not both"):
        Journey("x", a, tasks={a: 1})
    with pytest.raises(TypeError, match="nothing to do"):
        Journey("x")

    class Empty(Journey):
        pass

    with pytest.raises(TypeError, match="'Empty' has nothing to do"):
        Empty()


# --- plain functions and as_journey ------------------------------------------------------


async def visit(user: VirtualUser) -> None:
    """Look at the home page."""
    await user.get("/", name="home")


def test_as_journey_accepts_functions_classes_and_journeys(server: ServerProcess) -> None:
    j = as_journey(visit)
    assert j.name == "visit" and j.description == "Look at the home page."

    class Shop(Journey):
        name = "shop"
        think_time = 0.01

        async def iteration(self, user: VirtualUser) -> None:
            await user.get("/", name="home")

    shop = as_journey(Shop)
    assert shop.name == "shop" and shop.think_time == 0.01 and shop.on_start is None
    assert as_journey(shop) is shop
    # run() takes the function directly, and labels the result with its name
    result = run(Closed(users=1, duration=5.0, iterations=2), visit, server.url)
    assert result.actions["home"].count == 2 and result.labels["journey"] == "visit"


def test_as_journey_names_what_it_refuses() -> None:
    def sync(user: VirtualUser) -> None:
        return None

    async def no_args() -> None:
        return None

    with pytest.raises(TypeError, match="sync.* must be an 'async def'"):
        as_journey(sync)
    with pytest.raises(TypeError, match="no_args.* exactly one argument"):
        as_journey(no_args)
    with pytest.raises(TypeError, match="42 is not a journey"):
        as_journey(42)
    with pytest.raises(TypeError, match="'realistic' is not a journey"):
        as_journey("realistic")


# --- on_start / on_stop ----------------------------------------------------------------


class _Lifecycle(Journey):
    name = "lifecycle"

    async def on_start(self, user: VirtualUser) -> None:
        await user.post("/x", name="login")

    @task(2)
    async def browse(self, user: VirtualUser) -> None:
        await user.get("/x?delay_ms=5", name="browse")

    @task(1)
    async def buy(self, user: VirtualUser) -> None:
        await user.post("/x?delay_ms=5", name="buy")

    async def on_stop(self, user: VirtualUser) -> None:
        await user.post("/x", name="logout")


def test_on_start_and_on_stop_once_per_user(server: ServerProcess) -> None:
    result = run(Closed(users=3, duration=30.0, iterations=20), _Lifecycle, server.url)
    assert result.errors == {} and result.iterations == 60
    assert result.actions["login"].count == 3 and result.actions["logout"].count == 3
    assert result.actions["browse"].count + result.actions["buy"].count == 60


def test_on_stop_runs_when_the_run_is_stopped_early(server: ServerProcess) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    result = run(Closed(users=4, duration=30.0, ramp_up=0.2), _Lifecycle, server.url,
                 stop_event=stop)
    assert result.interrupted
    assert result.actions["login"].count == 4 and result.actions["logout"].count == 4
    assert result.errors == {}


def test_on_stop_at_the_end_of_an_open_model_run(server: ServerProcess) -> None:
    result = run(Open(rate=40.0, duration=1.0, max_users=3), _Lifecycle, server.url)
    users = result.actions["login"].count
    assert 1 <= users <= 3
    assert result.actions["logout"].count == users


def test_on_stop_is_skipped_for_a_user_whose_on_start_failed(server: ServerProcess) -> None:
    class Failing(Journey):
        async def on_start(self, user: VirtualUser) -> None:
            (await user.get("/x?status=500", name="login")).raise_for_status()

        async def iteration(self, user: VirtualUser) -> None:
            await user.get("/x", name="never")

        async def on_stop(self, user: VirtualUser) -> None:
            await user.get("/x", name="logout")

    result = run(Closed(users=2, duration=30.0, iterations=2), Failing, server.url)
    assert "never" not in result.actions and "logout" not in result.actions


# --- default request names -------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "name"), [
    ("GET", "/items?x=1", "get_items"),
    ("GET", "/", "get_root"),
    ("GET", "", "get_root"),
    ("POST", "/api/photos/17/like", "post_api_photos_id_like"),
    ("DELETE", "/api/users/seed_user_12/follow", "delete_api_users_id_follow"),
    ("GET", "/o/550e8400-e29b-41d4-a716-446655440000", "get_o_id"),
    ("GET", "/v2/static/app.min.js#top", "get_v2_static_app_min_js"),
    ("GET", "/users/alice", "get_users_alice"),
    ("GET", "/a%20b/c-d", "get_a_20b_c-d"),
])
def test_default_names(method: str, path: str, name: str) -> None:
    assert default_name(method, path) == name


def test_thresholds_address_unnamed_requests(server: ServerProcess) -> None:
    async def unnamed(user: VirtualUser) -> None:
        await user.get("/items?x=1")
        await user.get(f"/items/{user.rng.randrange(10**6)}")

    result = run(Closed(users=1, duration=5.0, iterations=5), unnamed, server.url)
    assert set(result.actions) == {"get_items", "get_items_id"}
    outcomes = evaluate(result, ["get_items.p95 < 1s", "get_items_id.count == 5"])
    assert all(o.passed for o in outcomes), [o.describe() for o in outcomes]


# --- expected statuses -----------------------------------------------------------------


def test_expected_statuses_are_counted_apart_not_as_errors(server: ServerProcess) -> None:
    got: list[tuple[int, bool, bool]] = []

    async def journey(user: VirtualUser) -> None:
        r = await user.post("/x?status=409", name="like", expect=(409,))
        got.append((r.status, r.ok, r.expected))
        await user.post("/x?status=404", name="like", expect=(409,))
        await user.post("/x", name="like", expect=(409,))

    result = run(Closed(users=1, duration=5.0, iterations=2), journey, server.url)
    like = result.actions["like"]
    assert like.count == 6 and like.errors == 2 and like.expected == {409: 2}
    assert result.total.expected == {409: 2}
    assert set(result.errors) == {"status:404"}
    assert got == [(409, True, True)] * 2
    data = json.loads(json.dumps(result.to_dict()))
    assert data["actions"]["like"]["expected"] == {"409": 2}
    back = Result.from_dict(data)
    assert back.actions["like"].expected == {409: 2}


def test_on_stop_after_a_request_cut_short_gets_its_own_answer(server: ServerProcess) -> None:
    """The run ends while a slow request is in flight: on_stop must not read that answer."""
    answers: list[object] = []

    class Slow(Journey):
        async def iteration(self, user: VirtualUser) -> None:
            await user.get("/x?delay_ms=400", name="slow")

        async def on_stop(self, user: VirtualUser) -> None:
            answers.append((await user.get("/echo?delay_ms=300", name="logout")).json()["path"])

    result = run(Closed(users=1, duration=0.3), Slow, server.url)
    assert answers == ["/echo?delay_ms=300"]
    assert result.actions["logout"].count == 1 and "slow" not in result.actions
