"""The drawing page in a real headless Chromium: draw a digit with the mouse, see the network's answer.

Needs /usr/bin/chromium and Playwright's Python package. Without them the test is skipped, unless
DIGITLAB_REQUIRE_BROWSER=1 (CI), where it fails. The screenshot lands in test-artifacts/ under the
repository root, or in $DIGITLAB_ARTIFACTS.
"""

from __future__ import annotations

import io

import pytest
from browsing import artifacts_dir, chromium, draw, serving
from PIL import Image, ImageDraw

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server_url(mlp_run):
    """The app served by uvicorn in a thread, on a free port of 127.0.0.1."""
    from digitlab.serve import create_app

    with serving(create_app(mlp_run), start_timeout=30) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def problems() -> list[str]:
    """Page errors and console errors seen during a test (a test expecting one removes it)."""
    return []


@pytest.fixture
def page(browser, server_url, problems):
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP forbids
    context = browser.new_context(viewport={"width": 1200, "height": 1000}, device_scale_factor=1,
                                  bypass_csp=True)
    page = context.new_page()
    outside: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    local = (server_url, "blob:", "data:")  # blob: the uploaded photo shown back
    page.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
    page.goto(server_url + "/")
    page.wait_for_function("document.querySelector('#model-name').textContent === 'mlp · mnist'")
    yield page
    context.close()
    assert problems == []
    assert outside == []  # no CDN, no external network


SEVEN = [[(0.28, 0.22), (0.72, 0.22), (0.45, 0.82)]]
PREDICTED = "/^[0-9]$/.test(document.querySelector('#prediction').textContent)"
SETTLED = "document.body.dataset.busy === 'false'"  # no request in flight or waiting


def bar_heights(page) -> list[float]:
    return page.eval_on_selector_all(".bar", "els => els.map(e => e.getBoundingClientRect().height)")


def test_draw_a_seven_and_see_the_answer(page, server_url):
    assert page.locator("#prediction").text_content() == "?"
    assert page.locator(".bar").count() == 10
    draw(page, SEVEN)
    page.wait_for_function(PREDICTED)
    page.wait_for_selector("#activations .layer")
    page.wait_for_function(SETTLED)
    page.wait_for_timeout(300)  # the bars' height transition

    digit = page.locator("#prediction").text_content()
    assert digit in [str(i) for i in range(10)]
    assert page.locator(".bar").count() == 10
    top = page.locator(".bar.top")
    assert top.count() == 1 and top.get_attribute("data-label") == digit
    heights = bar_heights(page)
    assert max(heights) == heights[int(digit)] > 0
    # "97.0 % sure", or "not sure: 52.9 %" below the model's threshold (this tiny MLP is often unsure)
    assert "sure" in page.locator("#confidence").text_content()
    assert "%" in page.locator("#confidence").text_content()

    # the activation panel: one heat strip per hidden layer of the MLP (128 and 64 units)
    layers = page.locator("#activations .layer")
    assert layers.count() == 2
    assert page.eval_on_selector_all("#activations canvas.strip", "cs => cs.map(c => c.width)") == [128, 64]
    assert page.locator("#activations").is_visible()
    assert "neurons" in layers.first.text_content()

    # the 28x28 image the model saw has ink in it
    ink = page.evaluate("""() => {
        const d = document.querySelector('#seen').getContext('2d').getImageData(0, 0, 28, 28).data;
        let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s; }""")
    assert ink > 0

    # the page sends its drawing as a 140x140 PNG; the API gives the same answer for a copy of it
    png = page.evaluate("""async () => {
        const c = document.createElement('canvas'); c.width = c.height = 140;
        const g = c.getContext('2d'); g.imageSmoothingQuality = 'high';
        g.drawImage(document.querySelector('#pad'), 0, 0, 140, 140);
        const b = await new Promise(r => c.toBlob(r, 'image/png'));
        return Array.from(new Uint8Array(await b.arrayBuffer())); }""")
    assert Image.open(io.BytesIO(bytes(png))).size == (140, 140)
    api = page.request.post(server_url + "/api/predict", data=bytes(png),
                            headers={"Content-Type": "image/png"})
    assert api.ok and str(api.json()["label"]) == digit

    page.screenshot(path=str(artifacts_dir() / "browser.png"), full_page=True)

    page.click("#clear")
    assert page.locator("#prediction").text_content() == "?"
    page.wait_for_function("[...document.querySelectorAll('.bar')]"
                           ".every(b => b.getBoundingClientRect().height <= 2)")


def test_upload_a_photo(page, tmp_path):
    im = Image.new("RGB", (200, 260), (236, 233, 226))
    ImageDraw.Draw(im).line([(100, 40), (96, 220)], fill=(25, 25, 35), width=14)
    photo = tmp_path / "one.png"
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    photo.write_bytes(buf.getvalue())
    page.set_input_files("#file", str(photo))
    page.wait_for_function(PREDICTED)
    assert "one.png" in page.locator("#status").text_content()
    assert page.locator(".bar.top").count() == 1


def test_an_unusable_photo_shows_the_servers_message(page, tmp_path, problems):
    blank = tmp_path / "white.png"
    Image.new("L", (64, 64), 255).save(blank)
    page.set_input_files("#file", str(blank))
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert "blank" in page.locator("#status").text_content()
    assert page.locator("#prediction").text_content() == "?"
    assert len(problems) == 1 and "the server responded with a status of 422" in problems[0]
    problems.clear()


def test_a_photo_over_the_upload_limit_is_refused_in_the_page(page, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 4_500_000)
    page.set_input_files("#file", str(big))
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert "4.5 MB" in page.locator("#status").text_content()
    assert "up to 4.0 MB" in page.locator("#status").text_content()


def test_small_screen_layout(browser, server_url):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1,
                                  bypass_csp=True)
    page = context.new_page()
    page.goto(server_url + "/")
    page.wait_for_function("document.querySelector('#model-name').textContent !== '…'")
    draw(page, [[(0.5, 0.15), (0.5, 0.85)]])
    page.wait_for_function(PREDICTED)
    page.wait_for_selector("#activations .layer")
    page.wait_for_function(SETTLED)
    page.wait_for_timeout(300)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing overflows sideways
    pad = page.locator("#pad").bounding_box()
    assert pad["width"] > 200  # with the answer beside it, and room to scroll with a finger
    page.screenshot(path=str(artifacts_dir() / "browser-mobile.png"), full_page=True)
    context.close()
