"""The Visual Turing Test page in a real browser: headless Chromium driven by Selenium.

Two readers answer a tiny kit (generated arrays, two rounds, confidence) by clicks and by keys,
reload midway, go back to change an answer, download their answer files (JSON and CSV), and the
scoring reproduces exactly the table that the scripted answers imply. A screenshot at
1366 x 768 is checked for the image and the answer buttons, and every screen must fit a 1366 x
768 laptop and a 1024 x 600 netbook. A confidence changed on its own is kept; several readers
share one browser (a new tab starts at the reader-id screen, a taken id asks first, two tabs
of one reader lose nothing). Each test is bounded in time (an alarm) and always stops the
browser. Skipped without Chromium and chromedriver, failed instead when
MEDGAN_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medgan.studies.vtt.kit import assemble_kit, write_kit
from medgan.studies.vtt.scoring import score_answers
from medgan.studies.vtt.selection import toy_blocks

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WIDTH, HEIGHT = 1366, 768
SMALL = (1024, 600)  # a netbook screen: the browser leaves the page about 450 px of height
TEST_SECONDS = 120  # the most one browser test may take before it is stopped


def _require_browser() -> None:
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not CHROMIUM:
        missing.append("chromium")
    if not CHROMEDRIVER:
        missing.append("chromedriver")
    if missing:
        why = f"needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("MEDGAN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MEDGAN_REQUIRE_BROWSER=1 but the browser test {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("vtt")
    blocks = toy_blocks(n_real=2, n_synthetic=2, size=16, seed=3)
    kit = assemble_kit(
        blocks,
        name="toy",
        seed=5,
        confidence=True,
        second_round={"clue": "real_examples", "text": "Look at the edges.", "n_examples": 2},
    )
    paths = {
        "page": root / "page" / "vtt_toy.html",
        "key": root / "key" / "answer_key.tsv",
        "record": root / "key" / "kit.json",
    }
    write_kit(kit, page_path=paths["page"], key_path=paths["key"], record_path=paths["record"])
    return kit, paths


def _too_slow(signum, frame):
    raise TimeoutError(f"browser test ran past {TEST_SECONDS} s")


@pytest.fixture(params=[(WIDTH, HEIGHT)], ids=lambda size: f"{size[0]}x{size[1]}")
def driver(tmp_path, request):
    _require_browser()
    width, height = request.param
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
    ):
        opts.add_argument(arg)
    opts.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    old = signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(TEST_SECONDS)
    drv = None
    try:
        drv = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    finally:
        if drv is None:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    drv.set_page_load_timeout(20)
    drv.set_script_timeout(10)
    drv.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    drv.downloads = downloads
    try:
        yield drv
    finally:
        try:
            drv.quit()  # stops chromium and chromedriver
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def scripted(reader: str, rnd: int, truth: str, model: str) -> tuple[str, int]:
    """The answer and confidence a scripted reader gives."""
    other = "real" if truth == "synthetic" else "synthetic"
    if reader == "R1":  # right, except that it calls every synthetic Concat real in round 1
        answer = "real" if (rnd == 1 and model == "toy_concat") else truth
    else:  # R2: calls every T1 image synthetic, gets Concat right, in round 2 all wrong
        answer = ("synthetic" if model == "toy_t1" else truth) if rnd == 1 else other
    return answer, 1 + (len(model) + rnd + (truth == "real")) % 5


def _screen(drv) -> str:
    return drv.execute_script(
        "return document.querySelector('.screen.on') ? document.querySelector('.screen.on').id : ''"
    )


def _count(drv) -> str:
    return drv.find_element("id", "count").text


def _wait_file(folder: Path, suffix: str) -> Path:
    for _ in range(100):
        done = [p for p in folder.iterdir() if p.suffix == suffix]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} download in {folder}: {list(folder.iterdir())}")


def _answer(drv, answer: str, conf: int, by_keys: bool) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    if by_keys:
        ActionChains(drv).send_keys(str(conf)).send_keys(answer[0]).perform()
    else:
        drv.find_element("id", f"conf-{conf}").click()
        drv.find_element("id", f"btn-{answer}").click()


def _run_reader(drv, page: Path, reader: str, key: pd.DataFrame, n_steps: int) -> None:
    """Answer every image as ``scripted`` says, half by clicks and half by keys; reload after
    the fifth answer; answer the seventh wrongly first, go back and correct it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    truth = key.set_index("item")
    box = drv.find_element("id", "reader-id")
    box.clear()
    box.send_keys(reader)
    drv.find_element("id", "start").click()
    answered = 0
    while _screen(drv) != "screen-done":
        if _screen(drv) == "screen-intro":
            drv.find_element("id", "btn-continue").click()
            continue
        assert _screen(drv) == "screen-item"
        panels = drv.find_element("id", "panels")
        item, rnd = panels.get_attribute("data-item"), int(panels.get_attribute("data-round"))
        answer, conf = scripted(reader, rnd, truth.at[item, "truth"], truth.at[item, "model"])
        if answered == 6:  # wrong first, then back (arrow key) and the scripted answer
            wrong = "real" if answer == "synthetic" else "synthetic"
            _answer(drv, wrong, conf, by_keys=False)
            ActionChains(drv).send_keys(Keys.ARROW_LEFT).perform()
            assert drv.find_element("id", "panels").get_attribute("data-item") == item
            chosen = drv.find_element("id", f"btn-{wrong}").get_attribute("class")
            assert "chosen" in chosen  # the earlier answer is shown
        _answer(drv, answer, conf, by_keys=answered % 2 == 1)
        answered += 1
        assert _count(drv).startswith(f"{answered} of {n_steps}")
        if answered == 5:
            drv.refresh()  # progress must survive the reload
            assert _screen(drv) == "screen-item"
            assert _count(drv).startswith(f"5 of {n_steps}")
            assert drv.find_element("id", "reader-label").text == f"Reader {reader}"
    assert answered == n_steps


def _expected(key: pd.DataFrame, readers: list[str]) -> dict:
    """Counts per (round, model, reader) and Fleiss' kappa per (round, model), from the script."""
    counts, kappas = {}, {}
    for rnd in (1, 2):
        for model, block in key.groupby("model"):
            calls = {r: [scripted(r, rnd, t, model)[0] for t in block["truth"]] for r in readers}
            for r in readers:
                c = {
                    f"{x}_as_{y}": sum(
                        t == x and a == y for t, a in zip(block["truth"], calls[r], strict=True)
                    )
                    for x in ("real", "synthetic")
                    for y in ("real", "synthetic")
                }
                counts[(rnd, model, r)] = c
            counts[(rnd, model, "pooled")] = {
                k: sum(counts[(rnd, model, r)][k] for r in readers) for k in c
            }
            # Fleiss' kappa with 2 raters, written out: observed vs chance agreement
            agree = np.mean([calls["R1"][i] == calls["R2"][i] for i in range(len(block))])
            p_syn = np.mean([a == "synthetic" for r in readers for a in calls[r]])
            p_e = p_syn**2 + (1 - p_syn) ** 2
            kappas[(rnd, model)] = (agree - p_e) / (1 - p_e) if p_e < 1 else float("nan")
    return {"counts": counts, "kappa": kappas}


def test_two_readers_answer_download_and_score(kit, driver, tmp_path):
    kit_obj, paths = kit
    key = kit_obj.key
    n_steps = 2 * len(key)
    driver.get(paths["page"].as_uri())
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    answers_dir = tmp_path / "answers"
    answers_dir.mkdir()
    for reader, fmt in (("R1", "json"), ("R2", "csv")):
        _run_reader(driver, paths["page"], reader, key, n_steps)
        assert "All 16 answers" in driver.find_element("id", "done-text").text
        if reader == "R1":  # the CSV of the same answers too, kept aside
            driver.find_element("id", "download-csv").click()
            shutil.move(_wait_file(driver.downloads, ".csv"), tmp_path / "r1.csv")
            shown = driver.find_element("id", "answers-text").get_attribute("value")
        driver.find_element("id", f"download-{fmt}").click()
        got = _wait_file(driver.downloads, f".{fmt}")
        assert got.name == f"vtt_toy_{kit_obj.kit_id}_{reader}.{fmt}"
        shutil.move(got, answers_dir / got.name)
        driver.find_element("id", "switch").click()
        assert _screen(driver) == "screen-start"
    # the JSON names the kit and the reader; the CSV and the text shown on the page agree
    doc = json.loads((answers_dir / f"vtt_toy_{kit_obj.kit_id}_R1.json").read_text())
    assert (doc["kit_id"], doc["reader"], len(doc["answers"])) == (kit_obj.kit_id, "R1", 16)
    as_csv = pd.read_csv(tmp_path / "r1.csv")
    assert set(as_csv["kit_id"]) == {kit_obj.kit_id} and set(as_csv["reader"]) == {"R1"}
    got = [(a["round"], a["item"], a["answer"], a["confidence"]) for a in doc["answers"]]
    assert got == list(
        zip(as_csv["round"], as_csv["item"], as_csv["answer"], as_csv["confidence"], strict=True)
    )
    assert json.loads(shown)["answers"] == [
        {k: a[k] for k in ("round", "set", "item", "answer", "confidence", "answered_at")}
        for a in doc["answers"]
    ]

    table = score_answers(
        answers_dir=answers_dir,
        key_path=paths["key"],
        record_path=paths["record"],
        table1_path=tmp_path / "t1.tsv",
        scores_path=tmp_path / "scores.tsv",
        readers_path=tmp_path / "readers.tsv",
        figure_path=tmp_path / "f.png",
    )
    want = _expected(key, ["R1", "R2"])
    for (rnd, model, reader), counts in want["counts"].items():
        row = table[
            (table["round"] == rnd) & (table["model"] == model) & (table["reader"] == reader)
        ]
        assert len(row) == 1
        assert {k: int(row.iloc[0][k]) for k in counts} == counts, (rnd, model, reader)
        n = sum(counts.values())
        acc = (counts["real_as_real"] + counts["synthetic_as_synthetic"]) / n
        assert row.iloc[0]["accuracy"] == pytest.approx(acc, abs=1e-12)
    for (rnd, model), kappa in want["kappa"].items():
        row = table[
            (table["round"] == rnd) & (table["model"] == model) & (table["reader"] == "pooled")
        ]
        got = row.iloc[0]["fleiss_kappa"]
        assert (np.isnan(got) and np.isnan(kappa)) or got == pytest.approx(kappa, abs=1e-12)
    # the confidences the script gave are the ones scored
    r1 = table[(table["round"] == 1) & (table["model"] == "all") & (table["reader"] == "R1")]
    assert r1.iloc[0]["mean_confidence_correct"] > 0


def test_screenshot_at_laptop_size(kit, driver, tmp_path):
    from PIL import Image

    kit_obj, paths = kit
    driver.get(paths["page"].as_uri())
    driver.find_element("id", "reader-id").send_keys("shot")
    driver.find_element("id", "start").click()
    # a 1366 x 768 window, as on a laptop screen: the page gets what the browser leaves of it
    width, height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    assert width == WIDTH and 600 <= height <= HEIGHT
    png = driver.get_screenshot_as_png()
    (tmp_path / "page.png").write_bytes(png)
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    assert shot.shape == (height, width)
    images = driver.find_elements("css selector", "img.vtt-image")
    assert images
    for img in images:
        assert img.is_displayed()
        r = img.rect
        assert r["width"] >= 300 and r["height"] >= 300, r  # shown large
        assert r["x"] >= 0 and r["y"] >= 0
        assert r["x"] + r["width"] <= width and r["y"] + r["height"] <= height
        crop = shot[
            int(r["y"]) + 2 : int(r["y"] + r["height"]) - 2,
            int(r["x"]) + 2 : int(r["x"] + r["width"]) - 2,
        ]
        # the disc of the toy image: bright pixels and dark pixels, not a blank box
        assert crop.max() > 180 and crop.min() < 60 and crop.std() > 40
    image_bottom = max(i.rect["y"] + i.rect["height"] for i in images)
    for name in ("btn-real", "btn-synthetic", "btn-back", "btn-next", "conf-1", "conf-5"):
        b = driver.find_element("id", name)
        r = b.rect
        assert b.is_displayed(), name
        assert r["y"] >= image_bottom - 1, name  # below the image, not over it
        assert r["x"] >= 0 and r["x"] + r["width"] <= width, name
        assert r["y"] + r["height"] <= height, f"{name} is below the fold: {r}"
        crop = shot[
            int(r["y"]) + 3 : int(r["y"] + r["height"]) - 3,
            int(r["x"]) + 3 : int(r["x"] + r["width"]) - 3,
        ]
        assert crop.std() > 10, f"{name}: no label drawn"  # the button's text is rendered


def test_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", None)
    monkeypatch.setenv("MEDGAN_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="chromium"):
        _require_browser()
    monkeypatch.delenv("MEDGAN_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        _require_browser()


@pytest.mark.parametrize("driver", [(WIDTH, HEIGHT), SMALL], indirect=True, ids=str)
def test_every_screen_fits_a_laptop_window(kit, driver):
    """Round 1, round 2 with its clue and real examples, and the end: no scrolling needed,
    on a laptop and on a 1024 x 600 netbook."""
    kit_obj, paths = kit
    driver.get(paths["page"].as_uri())
    assert not driver.find_element("id", "switch").is_displayed()  # no reader yet
    driver.find_element("id", "reader-id").send_keys("fit")
    driver.find_element("id", "start").click()
    fits = "return document.documentElement.scrollHeight <= window.innerHeight"
    for where in ("s.round === 1", "s.round === 2 && s.type === 'item'", "s.type === 'done'"):
        driver.execute_script(f"show(steps.findIndex(function (s) {{ return {where}; }}))")
        assert driver.execute_script(fits), where
        if where.startswith("s.round === 2"):
            assert driver.find_element("id", "clue").text == "Look at the edges."
            examples = driver.find_elements("css selector", "#examples .example")
            assert len(examples) == 2 and all(e.is_displayed() for e in examples)
            assert driver.find_element("id", "btn-synthetic").is_displayed()
        if s_item(where):
            height = driver.execute_script("return window.innerHeight")
            for name in ("btn-real", "btn-synthetic", "btn-next", "conf-5"):
                r = driver.find_element("id", name).rect
                assert r["y"] + r["height"] <= height, (where, name, r)
            for img in driver.find_elements("css selector", "img.vtt-image"):
                assert img.rect["width"] >= min(200, height // 3), (where, img.rect)


def s_item(where: str) -> bool:
    return "done" not in where


def _state(drv, reader: str) -> dict:
    return drv.execute_script(
        "return JSON.parse(localStorage.getItem(PREFIX + '/reader/' + arguments[0]))", reader
    )


def _start(drv, reader: str) -> None:
    box = drv.find_element("id", "reader-id")
    box.clear()
    box.send_keys(reader)
    drv.find_element("id", "start").click()


def _keys(drv, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(drv)
    for k in keys:
        chain = chain.send_keys(k)
    chain.perform()


def test_a_changed_confidence_alone_is_kept(kit, driver, tmp_path):
    """Answer with confidence 3, go back, press 5 and move on: the 5 is kept (saved at once,
    in the downloaded file, and the change in its history)."""
    from selenium.webdriver.common.keys import Keys

    kit_obj, paths = kit
    driver.get(paths["page"].as_uri())
    _start(driver, "C1")
    first = driver.find_element("id", "panels").get_attribute("data-item")
    _keys(driver, "3", "r")
    _keys(driver, Keys.ARROW_LEFT)
    assert driver.find_element("id", "panels").get_attribute("data-item") == first
    _keys(driver, "5", Keys.ARROW_RIGHT)  # only the confidence changes, then on
    assert driver.find_element("id", "panels").get_attribute("data-item") != first
    state = _state(driver, "C1")
    assert state["answers"]["1:" + first]["confidence"] == 5
    assert [h["confidence"] for h in state["history"] if h["item"] == first] == [3, 5]
    driver.refresh()  # and it survives a reload
    assert _state(driver, "C1")["answers"]["1:" + first]["confidence"] == 5
    # the same by clicks; the page says so
    driver.execute_script("show(steps.findIndex(function (s) { return s.type === 'item'; }))")
    driver.find_element("id", "conf-2").click()
    assert "changed to 2" in driver.find_element("id", "msg").text
    driver.find_element("id", "btn-next").click()
    state = _state(driver, "C1")
    assert state["answers"]["1:" + first]["confidence"] == 2 and len(state["history"]) == 3
    # a reload that sees no localStorage (Chromium now and then hands a reloaded page an empty
    # view of it) takes the tab's own copy and writes it back
    driver.execute_script("localStorage.removeItem(PREFIX + '/reader/C1')")
    driver.refresh()
    assert driver.find_element("id", "reader-label").text == "Reader C1"
    state = _state(driver, "C1")
    assert state["answers"]["1:" + first]["confidence"] == 2 and len(state["history"]) == 3


def test_several_readers_on_one_computer(kit, driver):
    """A new tab (the next person at the computer) starts at the reader-id screen, not inside
    the last reader's answers; a taken id asks before continuing; Change reader clears the id;
    two tabs of one reader keep each other's answers."""
    from selenium.webdriver.common.keys import Keys

    kit_obj, paths = kit
    url = paths["page"].as_uri()
    driver.get(url)
    _start(driver, "A")
    _keys(driver, "4", "s")
    _keys(driver, "4", "r")
    tab_a = driver.current_window_handle
    assert len(_state(driver, "A")["answers"]) == 2

    driver.switch_to.new_window("tab")  # the next reader opens the page
    driver.get(url)
    assert _screen(driver) == "screen-start"
    _start(driver, "A")  # the same id, by chance: asked first
    assert _screen(driver) == "screen-start"
    assert "already has 2 of 16" in driver.find_element("id", "start-msg").text
    driver.find_element("id", "start").click()  # yes, it is me: continue
    assert _screen(driver) == "screen-item" and _count(driver).startswith("2 of 16")
    tab_b = driver.current_window_handle

    _keys(driver, "2", "s")  # tab B answers the third image
    driver.switch_to.window(tab_a)
    assert _count(driver).startswith("3 of 16")  # tab A took over tab B's answer
    assert "chosen" in driver.find_element("id", "btn-synthetic").get_attribute("class")
    _keys(driver, Keys.ARROW_RIGHT, "1", "r")  # and answers the next one
    driver.switch_to.window(tab_b)
    state = _state(driver, "A")
    assert len(state["answers"]) == 4 and len(state["history"]) == 4
    assert _count(driver).startswith("4 of 16")

    driver.find_element("id", "switch").click()
    assert driver.find_element("id", "reader-id").get_attribute("value") == ""
    _start(driver, "B")  # a new id starts at once, with nothing answered
    assert _screen(driver) == "screen-item" and _count(driver).startswith("0 of 16")
    driver.refresh()  # a reload keeps this tab's reader
    assert driver.find_element("id", "reader-label").text == "Reader B"
