"""Drive the colorizing page in headless Chromium, as a person would; also makes the README's
screenshot, through the same code the browser test runs:

    python tests/serve_browser.py http://127.0.0.1:7860/ photo.png docs/serve_page.png
    python tests/serve_browser.py --hints http://127.0.0.1:7860/ photo.png docs/serve_hints.jpg

(the second for a server with a ``--task hints`` checkpoint: a hint placed by a click).

Chromium is Debian's (``apt-get install chromium``), driven by Playwright's Python API;
Playwright never downloads a browser here.
"""

import sys
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
# No background traffic of the browser's own: every request seen comes from the page.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def colorize_in_browser(url, photos, downloads, screenshot=None, timeout_s=120):
    """Open the page, upload ``photos``, wait for the result, download the first one.

    Returns:
        dict: ``about`` (the page's checkpoint line), ``status`` (its message), ``slider``
        (the [before, after] image URLs the slider shows), ``download`` (path of the
        downloaded result), ``download_name`` (the name the browser was given) and
        ``requests`` (every URL the page requested); with more than one photo also
        ``slider_second``, the slider's URLs after clicking the second result in the gallery.
    """
    from playwright.sync_api import sync_playwright

    requests = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900}, accept_downloads=True)
            page.on("request", lambda request: requests.append(request.url))
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url)
            about = page.locator("#about").inner_text()
            page.locator("#photos input[type=file]").set_input_files([str(p) for p in photos])
            page.wait_for_selector("#downloads a[download]")
            slider = [page.locator("#compare img").nth(i).get_attribute("src") for i in (0, 1)]
            status = page.locator("#status").inner_text()
            if screenshot:
                page.locator("#compare").scroll_into_view_if_needed()
                page.screenshot(path=str(screenshot), type="jpeg", quality=80, full_page=True)
            with page.expect_download() as event:
                page.locator("#downloads a[download]").first.click()
            download = event.value
            target = Path(downloads) / download.suggested_filename
            download.save_as(target)
            seen = {"about": about, "status": status, "slider": slider, "download": target,
                    "download_name": download.suggested_filename, "requests": requests}
            if len(photos) > 1:  # the gallery picks which result the slider compares
                first = page.locator("#compare img").nth(1).evaluate("img => img.src")
                page.locator("#results button.thumbnail-item").nth(1).click()
                page.wait_for_function(
                    "src => document.querySelectorAll('#compare img')[1].src != src", arg=first)
                seen["slider_second"] = [page.locator("#compare img").nth(i).get_attribute("src")
                                         for i in (0, 1)]
            return seen
        finally:
            browser.close()


def hints_in_browser(url, photo, downloads, screenshot=None, at=(0.3, 0.4), swatch=1,
                     timeout_s=120):
    """Upload ``photo``, click it at ``at`` (fractions of its width and height) to place a
    hint, click suggested colour number ``swatch`` for it, and download the zip.

    Returns:
        dict: ``expected`` (the photo pixel clicked, (x, y), from where the browser drew the
        photo), ``hint`` and ``picked`` (the hint list's line for it after the click and after
        the swatch), ``swatches`` (how many suggested
        colours), ``results`` (the slider's result URL after the upload, the click and the
        swatch), ``zip`` (the downloaded zip's path) and ``requests``.
    """
    from playwright.sync_api import sync_playwright

    requests = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900}, accept_downloads=True)
            page.on("request", lambda request: requests.append(request.url))
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url)
            page.locator("#photos input[type=file]").set_input_files([str(photo)])
            page.wait_for_selector("#downloads a[download]")
            results = [_result_src(page)]
            img = page.locator("#hint-photo img")
            img.wait_for()
            img.scroll_into_view_if_needed()  # a click lands only inside the viewport
            # Where the browser drew the photo inside the <img> box, from its CSS object-fit.
            box = img.evaluate("i => {const r = i.getBoundingClientRect(); return [r.left, "
                               "r.top, r.width, r.height, i.naturalWidth, i.naturalHeight, "
                               "getComputedStyle(i).objectFit]}")
            left, top, w, h, nw, nh, fit = box
            scale = {"contain": min(w / nw, h / nh), "scale-down": min(w / nw, h / nh, 1),
                     "fill": None}.get(fit, 1)
            assert scale is not None, f"the photo is drawn with object-fit {fit}"
            x0, y0 = left + (w - nw * scale) / 2, top + (h - nh * scale) / 2
            expected = (int(at[0] * nw), int(at[1] * nh))
            page.mouse.click(x0 + (expected[0] + 0.5) * scale,
                                 y0 + (expected[1] + 0.5) * scale)
            page.wait_for_selector("#hint-list label:has-text('1: x ')")
            hint = page.locator("#hint-list label").first.inner_text()
            # The download list now has hints.json: a new result, whether or not its pixels
            # moved (the page's file URLs follow the content, so an unchanged result keeps
            # its URL).
            # A file's link carries its name in the download attribute (its text is the size).
            json_link = page.locator("#downloads a[download='hints.json']")
            json_link.wait_for()
            results.append(_result_src(page))
            swatches = page.locator("#suggestions button.thumbnail-item")
            swatches.nth(swatch).wait_for()
            count = swatches.count()
            old = json_link.get_attribute("href")
            swatches.nth(swatch).click()
            page.wait_for_function(
                "old => [...document.querySelectorAll('#downloads a[download=\"hints.json\"]')]"
                ".some(a => a.getAttribute('href') != old)",
                arg=old)
            picked = page.locator("#hint-list label").first.inner_text()
            results.append(_result_src(page))
            if screenshot:
                page.locator("#hints").first.scroll_into_view_if_needed()  # gradio ids it twice
                page.screenshot(path=str(screenshot), type="jpeg", quality=80, full_page=True)
            with page.expect_download() as event:
                page.locator("#downloads a[download='colorized.zip']").click()
            target = Path(downloads) / event.value.suggested_filename
            event.value.save_as(target)
            return {"expected": expected, "hint": hint, "picked": picked, "swatches": count,
                    "results": results,
                    "zip": target, "requests": requests, "scale": scale}
        finally:
            browser.close()


def _result_src(page):
    return page.locator("#compare img").nth(1).evaluate("img => img.src")


def foreign_hosts(requests, url):
    """The hosts other than the server's own that ``requests`` went to."""
    own = urlsplit(url).netloc
    return sorted({urlsplit(r).netloc for r in requests
                   if urlsplit(r).scheme in ("http", "https", "ws", "wss")} - {own})


if __name__ == "__main__":
    import tempfile

    hints = "--hints" in sys.argv
    server, photo, shot = [a for a in sys.argv[1:] if a != "--hints"][:3]
    with tempfile.TemporaryDirectory() as folder:
        if hints:
            seen = hints_in_browser(server, photo, folder, screenshot=shot)
            print(seen["hint"])
        else:
            seen = colorize_in_browser(server, [photo], folder, screenshot=shot)
            print(seen["status"])
    print("hosts other than the server's:", foreign_hosts(seen["requests"], server) or "none")
