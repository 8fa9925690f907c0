"""The report index in a real browser: headless Chromium opens a copied report folder from disk.

At 1280 px wide the page renders with its title, every link names a file in the copied folder,
every image decodes, nothing is wider than the window and the page holds no script. The folder is
copied first, so the page cannot lean on anything where it was written. Skips (with the reason)
without chromium, chromedriver or selenium; ``.ci/install-browser`` installs them, ``.ci/run`` calls it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from runfolder import FINDINGS, make_report

LAB_TESTS = Path(__file__).resolve().parents[1] / "lab"  # labdriver.py: the headless Chromium the lab test uses
WIDTH, HEIGHT = 1280, 900

JS_PAGE = """
const r = document.documentElement;
return {
  title: document.title,
  h1: (document.querySelector('h1') || {}).textContent,
  findings: Array.from(document.querySelectorAll('.findings li')).map(li => li.textContent),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  images: Array.from(document.images).map(i => ({src: i.src, complete: i.complete, width: i.naturalWidth})),
  scripts: document.scripts.length,
  scrollWidth: r.scrollWidth, innerWidth: window.innerWidth,
  widest: Math.max(...Array.from(document.body.querySelectorAll('*')).map(e => e.getBoundingClientRect().right)),
};
"""


@pytest.fixture(scope="module")
def browser():
    if str(LAB_TESTS) not in sys.path:
        sys.path.insert(0, str(LAB_TESTS))
    import labdriver

    why = labdriver.missing_browser()
    if why:
        pytest.skip(why)
    driver = labdriver.chrome(WIDTH, HEIGHT)
    driver.set_window_size(WIDTH, HEIGHT)
    yield driver
    driver.quit()


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_index_renders_and_every_link_and_image_resolves_at_1280px(browser, tmp_path):
    make_report(tmp_path / "written")
    copy = tmp_path / "copied elsewhere" / "report"
    shutil.copytree(tmp_path / "written", copy)
    shutil.rmtree(tmp_path / "written")
    browser.get((copy / "index.html").as_uri())
    page = browser.execute_script(JS_PAGE)
    assert page["title"].startswith("kit report: quick profile") and page["h1"] == "kit performance reports"
    assert page["findings"] == FINDINGS  # markup in a finding stays text
    assert page["scripts"] == 0 and "<script" not in (copy / "index.html").read_text().lower()
    assert len(page["links"]) >= 8 and page["images"], page
    for url in page["links"] + [image["src"] for image in page["images"]]:
        parts = urlsplit(url)
        assert parts.scheme == "file", url
        path = Path(unquote(parts.path))
        assert path.is_file() and copy in path.parents, url
    assert all(image["complete"] and image["width"] > 0 for image in page["images"]), page["images"]
    assert page["innerWidth"] <= WIDTH
    assert page["scrollWidth"] <= page["innerWidth"] and page["widest"] <= page["innerWidth"], page
    browser.save_screenshot(str(tmp_path / "index.png"))
