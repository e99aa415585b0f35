"""The page at ``/`` in a real headless Chromium (Playwright, the system's chromium): an image upload and a text
show the API's top labels as bars, the model's labels / metrics / lineage are listed, and an API key is asked for
when the server needs one."""
from __future__ import annotations

import shutil
import threading

import httpx
import pytest

from tests.serve.conftest import free_port, wait_until
from transferkit.serve import ServeConfig, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (serve extra)")


class ThreadServer:
    """uvicorn serving ``app`` from a background thread on a free 127.0.0.1 port."""

    def __init__(self, app) -> None:
        import uvicorn

        self.app, self.port = app, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "uvicorn to start")
        assert self.app.state.server.ready.wait(60), self.app.state.server.failure
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def browser():
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


def shown_bars(page) -> list[tuple[str, float]]:
    page.wait_for_selector("#results[data-state=done]", timeout=15_000)
    bars = page.locator("#results .bar")
    return [(bars.nth(i).get_attribute("data-label"), float(bars.nth(i).get_attribute("data-probability")))
            for i in range(bars.count())]


def api_bars(prediction: dict) -> list[tuple[str, float]]:
    return [(str(t["label"]), t["probability"]) for t in prediction["top_k"]]


def assert_same_bars(shown, expected) -> None:
    assert [label for label, _ in shown] == [label for label, _ in expected]
    assert all(abs(a - b) < 1e-6 for (_, a), (_, b) in zip(shown, expected))


def test_image_upload_shows_the_apis_top_labels(browser, image_run, digit_pngs):
    with ThreadServer(create_app(image_run)) as srv:
        page = browser.new_page()
        page.goto(srv.url + "/")
        page.wait_for_selector("#image-input:not([hidden])")
        assert page.locator("#text-input").is_hidden()
        assert page.locator("#labels li").all_inner_texts() == [str(i) for i in range(10)]
        assert "accuracy" in page.locator("#metrics").inner_text()
        assert "scratch:cnn" in page.locator("#lineage").inner_text()
        for png in digit_pngs[:2]:
            page.locator("#top-k").fill("4")
            page.set_input_files("#file", str(png))
            shown = shown_bars(page)
            r = httpx.post(f"{srv.url}/v1/predict", files={"images": (png.name, png.read_bytes(), "image/png")},
                           params={"top_k": 4})
            assert len(shown) == 4
            assert_same_bars(shown, api_bars(r.json()["predictions"][0]))
            page.evaluate("document.getElementById('results').dataset.state = ''")
        assert page.locator("#preview").is_visible()
        page.close()


def test_pasted_text_shows_the_apis_top_labels(browser, text_run):
    with ThreadServer(create_app(text_run)) as srv:
        page = browser.new_page()
        page.goto(srv.url + "/")
        page.wait_for_selector("#text-input:not([hidden])")
        assert page.locator("#image-input").is_hidden()
        text = "what an awful, boring film"
        page.locator("#text").fill(text)
        page.locator("#predict-text").click()
        shown = shown_bars(page)
        r = httpx.post(f"{srv.url}/v1/predict", json={"texts": [text], "top_k": 5})
        assert shown[0][0] == "neg" and len(shown) == 2  # both labels of a 2-class run
        assert_same_bars(shown, api_bars(r.json()["predictions"][0]))
        page.close()


def test_page_asks_for_the_api_key(browser, text_run):
    with ThreadServer(create_app(text_run, ServeConfig(api_key="page-key"))) as srv:
        page = browser.new_page()
        page.goto(srv.url + "/")
        page.wait_for_selector("#key-panel:not([hidden])")
        assert page.locator("#main").is_hidden()
        page.locator("#api-key").fill("not-the-key")
        page.locator("#key-submit").click()
        # a locator wait, not wait_for_function: polling a JS string needs eval, which the page's CSP forbids
        playwright_sync.expect(page.locator("#key-error")).to_contain_text("Wrong API key")
        page.locator("#api-key").fill("page-key")
        page.locator("#key-submit").click()
        page.wait_for_selector("#text-input:not([hidden])")
        assert page.locator("#key-panel").is_hidden()
        page.locator("#text").fill("a great and wonderful film")
        page.locator("#predict-text").click()
        shown = shown_bars(page)
        r = httpx.post(f"{srv.url}/v1/predict", json={"texts": ["a great and wonderful film"], "top_k": 5},
                       headers={"Authorization": "Bearer page-key"})
        assert shown[0][0] == "pos"
        assert_same_bars(shown, api_bars(r.json()["predictions"][0]))
        page.close()
